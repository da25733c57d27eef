//! `roadsightd`: parse the command line, start logging, call into the library, map the
//! outcome to a sysexits code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use roadsight::{check, config, infer, supervisor, systemd, telemetry, warmup, watch};

/// sysexits(3) codes used by roadsightd.
mod exit {
    pub const USAGE: u8 = 64;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const CONFIG: u8 = 78;
}

/// The benchmark's allocation counter (feature `alloc-count`, never in a shipped build).
#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: roadsight::alloc_count::CountingAllocator = roadsight::alloc_count::CountingAllocator;

const DEFAULT_CONFIG: &str = "/etc/roadsight/roadsight.toml";

#[derive(Parser)]
#[command(name = "roadsightd", version, about = "Roadside camera box daemon: RTSP → detections → Redis Streams")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Global config file (for the default `run` command).
    #[arg(long, short, env = "ROADSIGHT_CONFIG", default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config, every camera file and the model; print a summary.
    Check,
    /// Build the TensorRT engine ahead of time (after an image update or a model change), so
    /// the daemon's next start loads it instead of building it; progress on stderr.
    Warmup,
    /// Follow the detection streams in the local Redis and print entries, then a latency summary.
    Watch {
        /// Stop after this many seconds (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Print only the summary, not every entry.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let logs = telemetry::init_logging("info");
    let config = match config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("roadsightd: configuration error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    logs.set_level(&config.log_level);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config, logs),
        Command::Check => match check::check(&config) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e @ (check::CheckError::Credential(_) | check::CheckError::Decoder(_))) => {
                eprintln!("roadsightd: check failed: {e}");
                ExitCode::from(exit::CONFIG)
            }
            Err(e) => {
                eprintln!("roadsightd: check failed: {}: {e}", config.file.display());
                ExitCode::from(if e.is_config() { exit::CONFIG } else { exit::UNAVAILABLE })
            }
        },
        Command::Warmup => match warmup::warmup(&config, systemd::Notifier::from_env(), &mut std::io::stderr()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("roadsightd: warmup failed: {}: {e}", config.file.display());
                ExitCode::from(match e {
                    infer::InferError::Run(_) => exit::SOFTWARE,
                    e if e.is_config() => exit::CONFIG,
                    _ => exit::UNAVAILABLE,
                })
            }
        },
        Command::Watch { seconds, quiet } => {
            let duration = (seconds > 0).then(|| Duration::from_secs(seconds));
            match runtime().block_on(watch::watch(&config, duration, quiet)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("roadsightd: watch: {e:#}");
                    let config_error = matches!(e.downcast_ref(), Some(roadsight::publish::PublishError::Config { .. }));
                    ExitCode::from(if config_error { exit::CONFIG } else { exit::UNAVAILABLE })
                }
            }
        }
    }
}

fn run(config: config::Config, logs: telemetry::LogControl) -> ExitCode {
    let file = config.file.clone();
    if let Err(e) = gstreamer::init() {
        eprintln!("roadsightd: cannot initialise GStreamer: {e}");
        return ExitCode::from(exit::SOFTWARE);
    }
    let rt = runtime();
    let outcome = rt.block_on(supervisor::run(config, logs));
    // A wedged inference thread is abandoned by the drain; do not wait for it on the way out.
    rt.shutdown_timeout(Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e {
                supervisor::RunError::Infer(ref i) if i.is_config() => exit::CONFIG,
                supervisor::RunError::Publish(_) | supervisor::RunError::Uplink(_) => exit::CONFIG,
                supervisor::RunError::Io(_) => exit::SOFTWARE,
                _ => exit::UNAVAILABLE,
            };
            if code == exit::CONFIG {
                tracing::error!(config = %file.display(), error = %e, "roadsightd cannot run: configuration error.");
            } else {
                tracing::error!(error = %e, "roadsightd cannot run.");
            }
            ExitCode::from(code)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("roadsightd-rt")
        .build()
        .expect("the tokio runtime starts")
}
