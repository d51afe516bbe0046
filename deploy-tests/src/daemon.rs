//! The daemons' binaries, as built for the test run, and what their `--help` says: the flags
//! the manifests and config files may use, their environment variables and defaults.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context};

/// Where `scripts/test.sh` puts the freshly built binaries.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("SIDECARS_BIN_DIR").context(
        "SIDECARS_BIN_DIR is not set: these tests run the daemons' binaries; run scripts/test.sh, \
         or `cargo build --workspace --bins` and set SIDECARS_BIN_DIR=$CARGO_TARGET_DIR/debug",
    )?;
    let path = Path::new(&dir).join(name);
    if !path.is_file() {
        bail!(
            "{} does not exist: build the workspace's binaries (cargo build --workspace --bins) first",
            path.display()
        );
    }
    Ok(path)
}

/// One option from `--help`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub long: String,
    pub env: Option<String>,
    pub default: Option<String>,
    pub takes_value: bool,
}

/// What `--help` lists.
#[derive(Debug, Clone)]
pub struct Help {
    pub flags: Vec<Flag>,
    pub subcommands: Vec<String>,
    pub text: String,
}

impl Help {
    pub fn flag(&self, long: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.long == long)
    }
}

/// Runs `bin [prefix...] --help` and reads it.
pub fn help(bin: &Path, prefix: &[&str]) -> anyhow::Result<Help> {
    let out = run(bin, prefix.iter().copied().chain(["--help"]))?;
    if !out.status.success() {
        bail!(
            "`{} {} --help` failed: {}",
            bin.display(),
            prefix.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(parse_help(&text))
}

pub fn run<I, S>(bin: &Path, args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(bin)
        .args(args)
        // the daemons read these; a developer's shell must not change what the test sees
        .env_remove("SIDECARS_LOG_FORMAT")
        .env_remove("SIDECARS_LOG_LEVEL")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))
}

/// Reads clap's long help: option lines, then their `[env: ...]` and `[default: ...]` notes.
pub fn parse_help(text: &str) -> Help {
    let mut flags: Vec<Flag> = Vec::new();
    let mut subcommands = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if !line.starts_with(' ') && trimmed.ends_with(':') {
            section = if trimmed.starts_with("Commands") {
                "commands"
            } else {
                "options"
            };
            continue;
        }
        if section == "commands" {
            // "  name  description": two leading spaces, the name is the first word
            if line.starts_with("  ") && !line.starts_with("      ") {
                if let Some(name) = trimmed.split_whitespace().next() {
                    if name != "help" {
                        subcommands.push(name.to_string());
                    }
                }
            }
            continue;
        }
        let opt = trimmed.strip_prefix("-").map(|_| trimmed);
        if let Some(opt) = opt.filter(|_| line.starts_with("  ") && !line.starts_with("          "))
        {
            // "-p, --port <PORT>" or "--verbose" or "--config <FILE>  text"
            let spec = opt.split("  ").next().unwrap_or(opt);
            if let Some(pos) = spec.find("--") {
                let rest = &spec[pos + 2..];
                let long: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                let takes_value = rest[long.len()..].trim_start().starts_with('<')
                    || rest[long.len()..].starts_with('=');
                flags.push(Flag {
                    long,
                    env: None,
                    default: None,
                    takes_value,
                });
                note(trimmed, flags.last_mut());
            }
            continue;
        }
        note(trimmed, flags.last_mut());
    }
    Help {
        flags,
        subcommands,
        text: text.to_string(),
    }
}

fn note(line: &str, flag: Option<&mut Flag>) {
    let Some(flag) = flag else { return };
    let mut rest = line;
    while let Some(start) = rest.find('[') {
        let Some(end) = rest[start..].find(']') else {
            return;
        };
        let inner = &rest[start + 1..start + end];
        if let Some(env) = inner.strip_prefix("env: ") {
            let name = env.split('=').next().unwrap_or(env).trim();
            flag.env = Some(name.to_string());
        } else if let Some(d) = inner.strip_prefix("default: ") {
            flag.default = Some(d.trim().to_string());
        }
        rest = &rest[start + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clap_long_help() {
        let h = parse_help(
            "Stores things\n\nUsage: x [OPTIONS] [COMMAND]\n\nCommands:\n  agent  Tails a dir\n  help   Print this\n\nOptions:\n      --port <PORT>\n          Port for the API\n          \n          [env: STAGING_PORT=]\n          [default: 10000]\n\n      --verbose\n          Talk [env: X_VERBOSE=]\n\n  -h, --help\n          Print help\n",
        );
        assert_eq!(h.subcommands, vec!["agent"]);
        let port = h.flag("port").unwrap();
        assert_eq!(port.env.as_deref(), Some("STAGING_PORT"));
        assert_eq!(port.default.as_deref(), Some("10000"));
        assert!(port.takes_value);
        let v = h.flag("verbose").unwrap();
        assert!(!v.takes_value);
        assert_eq!(v.env.as_deref(), Some("X_VERBOSE"));
        assert!(h.flag("help").is_some());
    }
}
