//! Just enough of a Dockerfile reader to check what an image contains and exposes: stages,
//! the `cargo build` of the builder, the runtime stage's USER, EXPOSE and ENTRYPOINT.

use std::path::Path;

use anyhow::{bail, Context};

/// One instruction, with continuation lines joined and comments dropped.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    pub line: usize,
}

/// What the tests need to know about one Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub instructions: Vec<Instruction>,
    /// Base image of every stage, in order.
    pub stages: Vec<String>,
    /// `-p` of the `cargo build` in the builder.
    pub package: Option<String>,
    /// `--bin` of that `cargo build`.
    pub bin: Option<String>,
    pub release: bool,
    pub locked: bool,
    /// USER of the final stage.
    pub user: Option<String>,
    /// EXPOSE of the final stage.
    pub expose: Vec<u16>,
    /// ENTRYPOINT of the final stage, in exec form.
    pub entrypoint: Vec<String>,
    /// (source, destination) of the final stage's `COPY --from=`.
    pub copies_from_build: Vec<(String, String)>,
}

pub fn read(path: &Path) -> anyhow::Result<Dockerfile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<Dockerfile> {
    let mut instructions = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        let joined = match pending.take() {
            Some((mut acc, start)) => {
                acc.push(' ');
                acc.push_str(body);
                (acc, start)
            }
            None => (body.to_string(), i + 1),
        };
        if continues {
            pending = Some(joined);
            continue;
        }
        let (text, start) = joined;
        let (kw, args) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
        instructions.push(Instruction {
            keyword: kw.to_ascii_uppercase(),
            args: args.trim().to_string(),
            line: start,
        });
    }
    if pending.is_some() {
        bail!("the last instruction ends with a line continuation");
    }

    let mut df = Dockerfile {
        instructions: instructions.clone(),
        stages: Vec::new(),
        package: None,
        bin: None,
        release: false,
        locked: false,
        user: None,
        expose: Vec::new(),
        entrypoint: Vec::new(),
        copies_from_build: Vec::new(),
    };
    for ins in &instructions {
        match ins.keyword.as_str() {
            "FROM" => {
                let image = ins.args.split_whitespace().next().unwrap_or("").to_string();
                df.stages.push(image);
                // each stage starts afresh; only the final stage's values are kept
                df.user = None;
                df.expose.clear();
                df.entrypoint.clear();
                df.copies_from_build.clear();
            }
            "RUN" => {
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                if let Some(pos) = words.windows(2).position(|w| w == ["cargo", "build"]) {
                    let rest = &words[pos + 2..];
                    let end = rest.iter().position(|w| *w == "&&").unwrap_or(rest.len());
                    let rest = &rest[..end];
                    for (j, w) in rest.iter().enumerate() {
                        match *w {
                            "-p" | "--package" => {
                                df.package = rest.get(j + 1).map(|s| s.to_string())
                            }
                            "--bin" => df.bin = rest.get(j + 1).map(|s| s.to_string()),
                            "--release" => df.release = true,
                            "--locked" => df.locked = true,
                            _ => {}
                        }
                    }
                }
            }
            "USER" => df.user = Some(ins.args.clone()),
            "EXPOSE" => {
                for p in ins.args.split_whitespace() {
                    let num = p.split('/').next().unwrap_or(p);
                    let port: u16 = num
                        .parse()
                        .with_context(|| format!("line {}: EXPOSE {p} is not a port", ins.line))?;
                    df.expose.push(port);
                }
            }
            "ENTRYPOINT" => {
                df.entrypoint = serde_json::from_str(&ins.args).with_context(|| {
                    format!("line {}: ENTRYPOINT must be in exec (JSON) form", ins.line)
                })?;
            }
            "COPY" => {
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                if words.first().is_some_and(|w| w.starts_with("--from=")) && words.len() == 3 {
                    df.copies_from_build
                        .push((words[1].to_string(), words[2].to_string()));
                }
            }
            _ => {}
        }
    }
    Ok(df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_stage() {
        let df = parse(
            "# c\nFROM rust:1 AS build\nEXPOSE 1\nRUN --mount=type=cache,target=/x \\\n    cargo build --release -p foo --bin bar \\\n && cp a b\nFROM base\nCOPY --from=build /out/bar /usr/local/bin/bar\nUSER 1:1\nEXPOSE 10 20/tcp\nENTRYPOINT [\"/usr/local/bin/bar\"]\n",
        )
        .unwrap();
        assert_eq!(df.stages, vec!["rust:1", "base"]);
        assert_eq!(df.package.as_deref(), Some("foo"));
        assert_eq!(df.bin.as_deref(), Some("bar"));
        assert!(df.release && !df.locked);
        assert_eq!(df.expose, vec![10, 20]);
        assert_eq!(df.user.as_deref(), Some("1:1"));
        assert_eq!(df.entrypoint, vec!["/usr/local/bin/bar"]);
        assert_eq!(df.copies_from_build.len(), 1);
    }
}
