//! Resolving an image's `User` (`name`, `uid`, `name:group`, `uid:gid`) through
//! the image's own /etc/passwd and /etc/group, with runc/umoci semantics.

use crate::error::{Error, Result};

/// The process identity a `User` string resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership when no group is given).
    pub sgids: Vec<u32>,
    /// Home directory from /etc/passwd, if the user is listed.
    pub home: Option<String>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` against the given passwd/group file contents (`None` when
/// the image has no such file).
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ExecUser> {
    let err = |reason: String| Error::User {
        spec: spec.to_string(),
        reason,
    };
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // An empty user means root, looked up so that HOME comes from passwd.
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let group_arg = group_arg.filter(|g| !g.is_empty());
    let uid_num = user_arg.parse::<u32>().ok();

    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        sgids: Vec::new(),
        home: None,
    };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let found = users.iter().find(|u| match uid_num {
        Some(n) => u.uid == n,
        None => u.name == user_arg,
    });
    let mut matched_name = None;
    match (found, uid_num) {
        (Some(u), _) => {
            out.uid = u.uid;
            out.gid = u.gid;
            out.home = Some(u.home.clone());
            matched_name = Some(u.name.clone());
        }
        (None, Some(n)) => out.uid = n,
        (None, None) => {
            return Err(err(format!(
                "no user {user_arg:?} in the image's /etc/passwd"
            )))
        }
    }

    let groups = group.map(parse_group).unwrap_or_default();
    match group_arg {
        Some(g) => {
            let gid_num = g.parse::<u32>().ok();
            let found = groups.iter().find(|gr| match gid_num {
                Some(n) => gr.gid == n,
                None => gr.name == g,
            });
            out.gid = match (found, gid_num) {
                (Some(gr), _) => gr.gid,
                (None, Some(n)) => n,
                (None, None) => {
                    return Err(err(format!("no group {g:?} in the image's /etc/group")))
                }
            };
        }
        None => {
            if let Some(name) = matched_name {
                out.sgids = groups
                    .iter()
                    .filter(|gr| gr.members.contains(&name))
                    .map(|gr| gr.gid)
                    .collect();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33::/var/www:/bin/false\nbroken\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nadm:x:4:www,other\nstaff:x:50:www\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve("", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_deref()), (0, 0, Some("/root")));
        let u = resolve("www", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.sgids.clone()), (33, 33, vec![4, 50]));
        assert_eq!(u.home.as_deref(), Some("/var/www"));
        let u = resolve("www:adm", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.sgids.len()), (33, 4, 0));
        let u = resolve("1234:5678", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (1234, 5678, None));
        let u = resolve("33", Some(PASSWD), None).unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        let u = resolve("7", None, None).unwrap();
        assert_eq!((u.uid, u.gid), (7, 0));
    }

    #[test]
    fn unknown_names_fail() {
        assert!(resolve("nobody", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve("www:nogroup", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve("www", None, None).is_err());
    }
}
