//! What error texts may carry: every message is cut to [`MAX_MESSAGE`] characters before it
//! is logged or answered (messages are built from bounded parts already; this is the
//! backstop), and a server error's answer has the server's own directories (the data directory
//! and a local store's root) replaced by placeholders, so a client learns what failed but not
//! where the server keeps its files. The log keeps the full paths.

use std::sync::OnceLock;

use axum::http::StatusCode;

/// The longest message answered or logged, in characters.
pub const MAX_MESSAGE: usize = 1024;

static PRIVATE: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();

/// Registers the server's directories (at start; later calls are ignored).
pub fn set_private_paths(paths: Vec<(String, &'static str)>) {
    let mut paths: Vec<_> = paths.into_iter().filter(|(p, _)| p.len() > 1).collect();
    // longest first, so a store inside the data directory is named as the store
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let _ = PRIVATE.set(paths);
}

/// `msg` cut to [`MAX_MESSAGE`] characters.
pub fn bounded(msg: &str) -> String {
    match msg.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}… (cut)", &msg[..i]),
        None => msg.to_string(),
    }
}

/// The text a client gets for `msg`: as is for client errors (they name the request's own
/// mistake), with the server's directories replaced for server errors.
pub fn for_client(status: StatusCode, msg: &str) -> String {
    if !status.is_server_error() {
        return msg.to_string();
    }
    let mut out = msg.to_string();
    for (path, name) in PRIVATE.get().map(Vec::as_slice).unwrap_or_default() {
        out = out.replace(path.as_str(), name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_scrubs() {
        let long = "x".repeat(5000);
        assert!(bounded(&long).chars().count() < MAX_MESSAGE + 10);
        assert_eq!(bounded("short"), "short");
        set_private_paths(vec![
            ("/srv/data".into(), "<data-dir>"),
            ("/srv/data/staging".into(), "<store>"),
        ]);
        let m = "cannot read file:///srv/data/staging/bundles/x and /srv/data/spool/y";
        assert_eq!(
            for_client(StatusCode::INTERNAL_SERVER_ERROR, m),
            "cannot read file://<store>/bundles/x and <data-dir>/spool/y"
        );
        assert_eq!(for_client(StatusCode::BAD_REQUEST, m), m);
    }
}
