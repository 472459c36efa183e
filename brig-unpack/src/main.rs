//! brig-unpack command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use brig_unpack::bundle::{self, UnpackOptions};
use brig_unpack::config::SpecOptions;
use brig_unpack::idmap::{IdMap, IdRange};
use brig_unpack::layer::{ApplyOptions, Whiteouts};
use brig_unpack::pipeline::UnpackLimits;
use brig_unpack::platform::Platform;
use brig_unpack::store::Store;
use clap::{Args, Parser, Subcommand};

/// Turn an OCI image into an OCI runtime bundle for brig.
#[derive(Parser)]
#[command(
    name = "brig-unpack",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    unpack: UnpackArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the overlay rootfs of a bundle again.
    Mount { bundle: PathBuf },
    /// Unmount the overlay rootfs of a bundle.
    Umount { bundle: PathBuf },
    /// Remove a bundle (unmounting it first).
    Rm { bundle: PathBuf },
    /// Remove layers that no bundle uses.
    Gc {
        /// Layer store directory.
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

#[derive(Args)]
struct UnpackArgs {
    /// oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF|@N]
    #[arg(required = true)]
    image: Option<String>,
    /// Bundle directory to create (must not exist, or be empty).
    #[arg(required = true)]
    bundle: Option<PathBuf>,
    /// Replace the image's Cmd.
    #[arg(last = true)]
    cmd: Vec<String>,
    /// Unpack every layer into BUNDLE/rootfs instead of an overlay of stored layers.
    #[arg(long)]
    flat: bool,
    /// Layer store for overlay bundles.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Platform to take from multi-platform images: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
    /// Replace the image's Entrypoint (given as one argument; "" clears it). Drops the image's Cmd.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Produce a bundle for a rootless (user-namespaced) container.
    #[arg(long)]
    rootless: bool,
    /// uid mapping container:host:size (repeatable); file owners are shifted to match.
    #[arg(long = "uid-map")]
    uid_map: Vec<String>,
    /// gid mapping container:host:size (repeatable).
    #[arg(long = "gid-map")]
    gid_map: Vec<String>,
    /// Set process.terminal to false (umoci sets it to true).
    #[arg(long)]
    no_terminal: bool,
    /// Largest uncompressed size of one layer, in bytes.
    #[arg(long, default_value_t = 64 << 30)]
    max_size: u64,
    /// Layers decoded in parallel (default: number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Never draw progress.
    #[arg(long, short)]
    quiet: bool,
}

fn map(v: &[String]) -> brig_unpack::Result<IdMap> {
    Ok(IdMap(
        v.iter()
            .map(|s| IdRange::parse(s))
            .collect::<Result<_, _>>()?,
    ))
}

fn run(cli: Cli) -> brig_unpack::Result<()> {
    match cli.command {
        Some(Command::Mount { bundle }) => bundle::mount(&bundle),
        Some(Command::Umount { bundle }) => bundle::umount(&bundle),
        Some(Command::Rm { bundle }) => bundle::remove(&bundle),
        Some(Command::Gc { store }) => {
            let s = Store::open(&store.unwrap_or_else(Store::default_path))?;
            let r = s.gc()?;
            println!(
                "removed {} layers, {} stale bundle records, {} temp entries",
                r.layers, r.bundles, r.temps
            );
            Ok(())
        }
        None => {
            let a = cli.unpack;
            let (Some(image), Some(bundle_dir)) = (a.image, a.bundle) else {
                unreachable!("clap requires IMAGE and BUNDLE without a subcommand")
            };
            let uid_map = map(&a.uid_map)?;
            let gid_map = map(&a.gid_map)?;
            let mut limits = UnpackLimits {
                max_layer_size: a.max_size,
                ..Default::default()
            };
            if let Some(j) = a.jobs {
                limits.jobs = j.max(1);
            }
            let opts = UnpackOptions {
                flat: a.flat,
                store: a.store,
                platform: a.platform.as_deref().map(Platform::parse).transpose()?,
                spec: SpecOptions {
                    rootless: a.rootless,
                    uid_map: uid_map.clone(),
                    gid_map: gid_map.clone(),
                    entrypoint: a
                        .entrypoint
                        .map(|e| if e.is_empty() { vec![] } else { vec![e] }),
                    cmd: (!a.cmd.is_empty()).then_some(a.cmd),
                    terminal: !a.no_terminal,
                },
                apply: ApplyOptions {
                    whiteouts: Whiteouts::Apply,
                    uid_map,
                    gid_map,
                    rootless: a.rootless || !nix::unistd::geteuid().is_root(),
                },
                limits,
                progress: !a.quiet,
            };
            bundle::unpack(&image, &bundle_dir, &opts).map(|_| ())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brig-unpack: {e}");
            ExitCode::FAILURE
        }
    }
}
