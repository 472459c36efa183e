//! The image config (what we read) and its conversion to a runtime spec
//! (config.json), following umoci's rules so bundles match `umoci unpack`.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, MountBuilder,
    Spec,
};
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::user;

/// The parts of an OCI/docker image config this crate uses.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct ImageConfig {
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Author.
    #[serde(default)]
    pub author: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Runtime defaults.
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    /// Layer diff IDs.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `rootfs` of an image config.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct RootFs {
    /// Must be "layers".
    #[serde(rename = "type", default)]
    pub typ: String,
    /// Digests of the uncompressed layer tars, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// `config` of an image config: the container's defaults.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `user[:group]`.
    #[serde(default)]
    pub user: Option<String>,
    /// Ports, as map keys (`80/tcp`).
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Volume paths, as map keys.
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal name.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// The diff IDs, validated; `name` identifies the config in errors.
    pub fn diff_ids(&self, name: &str) -> Result<Vec<Digest>> {
        let rootfs = self
            .rootfs
            .as_ref()
            .ok_or_else(|| Error::Config(format!("{name}: no rootfs section")))?;
        if rootfs.typ != "layers" {
            return Err(Error::Config(format!(
                "{name}: rootfs.type is {:?}, not \"layers\"",
                rootfs.typ
            )));
        }
        rootfs.diff_ids.iter().map(|d| d.parse()).collect()
    }
}

/// Choices that shape the generated config.json.
#[derive(Clone, Debug, Default)]
pub struct SpecOptions {
    /// Produce a rootless (user-namespaced) spec.
    pub rootless: bool,
    /// uid mapping for the user namespace; empty means none (or the rootless default).
    pub uid_map: IdMap,
    /// gid mapping for the user namespace.
    pub gid_map: IdMap,
    /// Replaces the image's Entrypoint (and, as with docker, drops its Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub cmd: Option<Vec<String>>,
    /// `process.terminal`; umoci sets it to true.
    pub terminal: bool,
}

/// The runtime's own defaults (runc's `spec`, or its rootless variant), which
/// the image config is laid over.
pub fn default_spec(rootless: bool) -> Spec {
    brig::config::default_spec(rootless)
}

fn append_env(env: &mut Vec<String>, name: &str, value: &str) {
    let entry = format!("{name}={value}");
    let prefix = format!("{name}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// Formats `created` as umoci does (Go's RFC 3339 with nanoseconds: trailing
/// zeros of the fraction dropped); a missing time is Go's zero time.
fn iso8601(created: Option<&str>) -> String {
    let Some(c) = created.filter(|c| !c.is_empty()) else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    match c.find('.') {
        Some(dot) => {
            let tail = &c[dot + 1..];
            let digits_end = tail
                .find(|ch: char| !ch.is_ascii_digit())
                .unwrap_or(tail.len());
            let frac = tail[..digits_end].trim_end_matches('0');
            let zone = &tail[digits_end..];
            if frac.is_empty() {
                format!("{}{zone}", &c[..dot])
            } else {
                format!("{}.{frac}{zone}", &c[..dot])
            }
        }
        None => c.to_string(),
    }
}

fn mappings(map: &IdMap) -> Result<Vec<LinuxIdMapping>> {
    map.0
        .iter()
        .map(|r| {
            LinuxIdMappingBuilder::default()
                .container_id(r.container)
                .host_id(r.host)
                .size(r.size)
                .build()
                .map_err(|e| Error::Config(e.to_string()))
        })
        .collect()
}

/// Builds config.json from the image config; `passwd`/`group` are the image's
/// /etc/passwd and /etc/group contents, if it has them.
pub fn build_spec(
    cfg: &ImageConfig,
    passwd: Option<&str>,
    group: Option<&str>,
    opts: &SpecOptions,
) -> Result<Spec> {
    if cfg.os != "linux" {
        return Err(Error::Config(format!("unsupported OS {:?}", cfg.os)));
    }
    let c = cfg.config.clone().unwrap_or_default();
    let mut spec = default_spec(opts.rootless);

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(opts.terminal));
    process.set_cwd(
        c.working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
            .into(),
    );

    let mut env = process.env().clone().unwrap_or_default();
    for e in c.env.iter().flatten() {
        match e.split_once('=') {
            Some((name, value)) if !name.is_empty() => append_env(&mut env, name, value),
            _ => {
                return Err(Error::Config(format!(
                    "environment entry {e:?} is not NAME=value"
                )))
            }
        }
    }

    let (entrypoint, cmd) = match (&opts.entrypoint, &opts.cmd) {
        (Some(ep), cmd) => (ep.clone(), cmd.clone().unwrap_or_default()),
        (None, Some(cmd)) => (c.entrypoint.clone().unwrap_or_default(), cmd.clone()),
        (None, None) => (
            c.entrypoint.clone().unwrap_or_default(),
            c.cmd.clone().unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if !args.is_empty() {
        process.set_args(Some(args));
    }

    let user_spec = c.user.clone().unwrap_or_default();
    let exec = user::resolve(&user_spec, passwd, group)?;
    let mut u = process.user().clone();
    u.set_uid(exec.uid);
    u.set_gid(exec.gid);
    u.set_additional_gids(Some(exec.sgids.clone()));
    process.set_user(u);
    if let Some(home) = exec.home.as_deref().filter(|h| !h.is_empty()) {
        append_env(&mut env, "HOME", home);
    }
    process.set_env(Some(env));
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));

    let mut ann: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
    for (k, v) in c.labels.iter().flatten() {
        ann.insert(k.clone(), v.clone());
    }
    ann.insert("org.opencontainers.image.os".into(), cfg.os.clone());
    ann.insert(
        "org.opencontainers.image.architecture".into(),
        cfg.architecture.clone(),
    );
    ann.insert(
        "org.opencontainers.image.author".into(),
        cfg.author.clone().unwrap_or_default(),
    );
    ann.insert(
        "org.opencontainers.image.created".into(),
        iso8601(cfg.created.as_deref()),
    );
    ann.insert(
        "org.opencontainers.image.stopSignal".into(),
        c.stop_signal.clone().unwrap_or_default(),
    );
    let ports: Vec<String> = c
        .exposed_ports
        .iter()
        .flat_map(|p| p.keys().cloned())
        .collect();
    ann.insert(
        "org.opencontainers.image.exposedPorts".into(),
        ports.join(","),
    );
    spec.set_annotations(Some(ann));

    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    for vol in c.volumes.iter().flat_map(|v| v.keys()) {
        // umoci backs image volumes with a tmpfs so the path is writable and not shared.
        mounts.push(
            MountBuilder::default()
                .destination(vol)
                .typ("tmpfs")
                .source("none")
                .options(vec![
                    "rw".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                    "relatime".into(),
                ])
                .build()
                .map_err(|e| Error::Config(e.to_string()))?,
        );
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(None);
    if !opts.uid_map.is_identity() || !opts.gid_map.is_identity() {
        linux.set_uid_mappings(Some(mappings(&opts.uid_map)?));
        linux.set_gid_mappings(Some(mappings(&opts.gid_map)?));
        let mut ns = linux.namespaces().clone().unwrap_or_default();
        if !ns.iter().any(|n| n.typ() == LinuxNamespaceType::User) {
            let mut userns = LinuxNamespace::default();
            userns.set_typ(LinuxNamespaceType::User);
            ns.push(userns);
        }
        linux.set_namespaces(Some(ns));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ImageConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn converts_like_umoci() {
        let c = cfg(
            r#"{"os":"linux","architecture":"amd64","created":"2024-01-02T03:04:05.123456789Z",
            "config":{"User":"www","Env":["PATH=/bin","FOO=bar"],"Entrypoint":["/init"],"Cmd":["-v"],
            "WorkingDir":"/srv","Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{},"443/tcp":{}},
            "Volumes":{"/data":{}},"StopSignal":"SIGTERM"},
            "rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let spec = build_spec(
            &c,
            Some("www:x:33:33::/var/www:/bin/false\n"),
            Some("adm:x:4:www\n"),
            &SpecOptions {
                terminal: true,
                ..Default::default()
            },
        )
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(
            p.args().as_ref().unwrap(),
            &vec!["/init".to_string(), "-v".into()]
        );
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!(p.terminal(), Some(true));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"FOO=bar".to_string()));
        assert!(env.contains(&"HOME=/var/www".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![4]);
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a["a"], "b");
        assert_eq!(a["org.opencontainers.image.exposedPorts"], "443/tcp,80/tcp");
        assert_eq!(
            a["org.opencontainers.image.created"],
            "2024-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            iso8601(Some("2024-01-02T03:04:05.500+02:00")),
            "2024-01-02T03:04:05.5+02:00"
        );
        assert_eq!(
            iso8601(Some("2024-01-02T03:04:05.000Z")),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(iso8601(None), "0001-01-01T00:00:00Z");
        assert_eq!(a["org.opencontainers.image.stopSignal"], "SIGTERM");
        assert!(spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination().to_str() == Some("/data")));
        assert_eq!(
            spec.root().as_ref().unwrap().path().to_str(),
            Some("rootfs")
        );
    }

    #[test]
    fn overrides_and_errors() {
        let c = cfg(r#"{"os":"linux","config":{"Entrypoint":["/init"],"Cmd":["x"]}}"#);
        let o = SpecOptions {
            cmd: Some(vec!["y".into()]),
            ..Default::default()
        };
        let s = build_spec(&c, None, None, &o).unwrap();
        assert_eq!(
            s.process().as_ref().unwrap().args().as_ref().unwrap(),
            &vec!["/init".to_string(), "y".into()]
        );
        let o = SpecOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        let s = build_spec(&c, None, None, &o).unwrap();
        assert_eq!(
            s.process().as_ref().unwrap().args().as_ref().unwrap(),
            &vec!["/bin/sh".to_string()]
        );
        assert!(build_spec(
            &cfg(r#"{"os":"windows"}"#),
            None,
            None,
            &SpecOptions::default()
        )
        .is_err());
        assert!(build_spec(
            &cfg(r#"{"os":"linux","config":{"Env":["NOEQUALS"]}}"#),
            None,
            None,
            &SpecOptions::default()
        )
        .is_err());
        assert!(build_spec(
            &cfg(r#"{"os":"linux","config":{"User":"ghost"}}"#),
            None,
            None,
            &SpecOptions::default()
        )
        .is_err());
    }

    #[test]
    fn id_maps_add_user_namespace() {
        let c = cfg(r#"{"os":"linux"}"#);
        let o = SpecOptions {
            uid_map: IdMap(vec![crate::idmap::IdRange::parse("0:100000:65536").unwrap()]),
            gid_map: IdMap(vec![crate::idmap::IdRange::parse("0:100000:65536").unwrap()]),
            ..Default::default()
        };
        let s = build_spec(&c, None, None, &o).unwrap();
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.uid_mappings().as_ref().unwrap()[0].host_id(), 100000);
        assert!(l
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User));
    }
}
