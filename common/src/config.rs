//! Layered configuration: command-line flag, then environment variable, then a key in an
//! optional TOML file, then the built-in default.
//!
//! Each daemon declares its settings once, as a clap `Parser` whose args carry `env = ...`.
//! clap already gives "flag beats env beats default"; this module slots the TOML file in
//! between env and default by turning file keys into extra `--flag value` arguments, only for
//! settings that neither the command line nor the environment set. That keeps one source of
//! truth (the clap definition) for names, help text, validation and error messages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{ArgAction, CommandFactory, FromArgMatches};

/// Parses the process arguments into `T`, honouring `--config FILE` (or `<ENV_PREFIX>_CONFIG`).
///
/// On a bad flag, env value or file key it prints clap's message, which names the setting,
/// and exits with status 2, like any clap program.
pub fn parse<T: CommandFactory + FromArgMatches>(env_prefix: &str) -> T {
    match parse_from::<T, _, _>(std::env::args_os(), env_prefix, |k| std::env::var_os(k)) {
        Ok(v) => v,
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(ConfigError::File(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    }
}

/// What can go wrong while reading the configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// A flag or environment variable was wrong (or `--help`/`--version` was asked for).
    Clap(clap::Error),
    /// The TOML file could not be read, or has a key or value that is wrong.
    File(anyhow::Error),
}

/// Testable core of [`parse`]: `env` looks up environment variables.
pub fn parse_from<T, I, A>(
    args: I,
    env_prefix: &str,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<T, ConfigError>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = T::command().arg(
        clap::Arg::new("config")
            .long("config")
            .value_name("FILE")
            .env(format!("{env_prefix}_CONFIG"))
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML file with settings; its keys are the long flag names (flags and env vars win)"),
    );
    let config_path = find_config_path(&args, &format!("{env_prefix}_CONFIG"), &env);
    if let Some(path) = config_path {
        let extra = file_args(&cmd, &path, &args, &env).map_err(ConfigError::File)?;
        // file-derived arguments go right after the program name, before the user's own
        let tail = args.split_off(1.min(args.len()));
        args.extend(extra);
        args.extend(tail);
    }
    let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Clap)?;
    T::from_arg_matches(&matches).map_err(ConfigError::Clap)
}

fn find_config_path(
    args: &[OsString],
    env_name: &str,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    env(env_name).map(PathBuf::from)
}

/// Turns the TOML file into `--key value` pairs for the settings not already given.
fn file_args(
    cmd: &clap::Command,
    path: &Path,
    args: &[OsString],
    env: &impl Fn(&str) -> Option<OsString>,
) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            bail!(
                "config file {}: unknown setting `{key}` (settings are the long flag names, see --help)",
                path.display()
            );
        };
        let given_on_cli = args.iter().skip(1).any(|a| {
            let s = a.to_string_lossy();
            s == format!("--{long}") || s.starts_with(&format!("--{long}="))
        });
        let given_in_env = arg
            .get_env()
            .is_some_and(|e| env(&e.to_string_lossy()).is_some());
        if given_on_cli || given_in_env {
            continue;
        }
        let is_flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let values: Vec<String> = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| scalar(v, path, &key))
                .collect::<anyhow::Result<_>>()?,
            v => vec![scalar(v, path, &key)?],
        };
        if is_flag {
            match values.as_slice() {
                [v] if v == "true" => out.push(OsString::from(format!("--{long}"))),
                [v] if v == "false" => {}
                _ => bail!(
                    "config file {}: setting `{key}` must be true or false",
                    path.display()
                ),
            }
            continue;
        }
        for v in values {
            out.push(OsString::from(format!("--{long}={v}")));
        }
    }
    Ok(out)
}

fn scalar(v: &toml::Value, path: &Path, key: &str) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!(
            "config file {}: setting `{key}` has a {} value; use a string, number, boolean or list of those",
            path.display(),
            other.type_str()
        ),
    })
}

/// Parses a human byte size: `512`, `64KiB`, `10MB`, `2GiB`, `1g`.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1048576, 64MiB, 2GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("`{s}` has an unknown size unit `{u}`")),
    };
    Ok((n * mult as f64) as u64)
}

/// Parses a duration: `30s`, `5m`, `2h`, `1d`, `250ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 30s, 5m, 2h, 1d)"))?;
    let secs = |m: u64| std::time::Duration::from_secs(n.saturating_mul(m));
    Ok(match unit {
        "" | "s" => secs(1),
        "ms" => std::time::Duration::from_millis(n),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        u => return Err(format!("`{s}` has an unknown duration unit `{u}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(long, env = "DEMO_PORT", default_value_t = 10)]
        port: u16,
        #[arg(long, env = "DEMO_NAME", default_value = "dflt")]
        name: String,
        #[arg(long = "root", env = "DEMO_ROOTS", value_delimiter = ',')]
        roots: Vec<String>,
        #[arg(long, env = "DEMO_VERBOSE")]
        verbose: bool,
    }

    fn cfg(text: &str) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let s = p.to_string_lossy().into_owned();
        (d, s)
    }

    /// clap reads the real process environment, so `env` is set there for the call; the lock
    /// keeps tests that do so from seeing each other's variables.
    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, ConfigError> {
        static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let out = parse_from::<Demo, _, _>(args.iter().copied(), "DEMO", |k| std::env::var_os(k));
        for (k, _) in env {
            std::env::remove_var(k);
        }
        out
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let (_d, path) =
            cfg("port = 30\nname = \"file\"\nroot = [\"/a\", \"/b\"]\nverbose = true\n");
        let d = run(&["x", "--config", &path], &[]).unwrap();
        assert_eq!((d.port, d.name.as_str(), d.verbose), (30, "file", true));
        assert_eq!(d.roots, vec!["/a", "/b"]);
        let d = run(&["x", "--config", &path], &[("DEMO_PORT", "40")]).unwrap();
        assert_eq!(d.port, 40);
        let d = run(
            &["x", "--config", &path, "--port", "50"],
            &[("DEMO_PORT", "40")],
        )
        .unwrap();
        assert_eq!(d.port, 50);
        let d = run(&["x"], &[("DEMO_CONFIG", &path)]).unwrap();
        assert_eq!(d.name, "file");
        let d = run(&["x"], &[]).unwrap();
        assert_eq!((d.port, d.name.as_str()), (10, "dflt"));
    }

    #[test]
    fn wrong_settings_name_the_setting() {
        let (_d, path) = cfg("prot = 30\n");
        match run(&["x", "--config", &path], &[]) {
            Err(ConfigError::File(e)) => assert!(e.to_string().contains("`prot`"), "{e}"),
            other => panic!("expected file error, got {other:?}"),
        }
        let (_d2, path) = cfg("port = \"many\"\n");
        match run(&["x", "--config", &path], &[]) {
            Err(ConfigError::Clap(e)) => assert!(e.to_string().contains("--port"), "{e}"),
            other => panic!("expected clap error, got {other:?}"),
        }
        match run(&["x"], &[("DEMO_PORT", "99999")]) {
            Err(ConfigError::Clap(e)) => assert!(e.to_string().contains("99999"), "{e}"),
            other => panic!("expected clap error, got {other:?}"),
        }
        match run(&["x", "--config", "/nonexistent.toml"], &[]) {
            Err(ConfigError::File(e)) => assert!(e.to_string().contains("/nonexistent.toml")),
            other => panic!("expected file error, got {other:?}"),
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("2g"), Ok(2 << 30));
        assert_eq!(parse_byte_size("100"), Ok(100));
        assert!(parse_byte_size("lots").is_err());
        assert_eq!(
            parse_duration("30m"),
            Ok(std::time::Duration::from_secs(1800))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_duration("3 weeks").is_err());
    }
}
