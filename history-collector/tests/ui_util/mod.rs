//! Headless Chromium driven over the DevTools protocol, for the UI tests: one browser per
//! test, pages loaded one after the other in one tab, and for each page what the console
//! said (errors, warnings, uncaught exceptions, CSP violations, failed loads), its links,
//! values computed in the page, and full-page screenshots.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `$CHROMIUM`, else Debian's.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What one page load showed.
#[derive(Debug, Default)]
pub struct Visit {
    /// Console errors and warnings, exceptions, log entries of level error or warning.
    pub problems: Vec<String>,
}

pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: String,
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts headless Chromium and opens one tab with the Page, Runtime and Log domains on.
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} (install chromium): {e}", chromium()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.split("DevTools listening on ").nth(1) {
                        let _ = tx.send(url.trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not print its DevTools address");
        let (ws, _) = tungstenite::connect(url.as_str()).expect("connect to DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        }
        let mut b = Browser {
            child,
            ws,
            next: 0,
            session: String::new(),
            events: VecDeque::new(),
            _profile: profile,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for m in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(m, json!({}));
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .expect("send to DevTools");
        self.next
    }

    /// The next message, or `None` after the read timeout.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection failed: {e}"),
        }
    }

    fn wait_result(&mut self, id: u64, method: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(v) = self.read() {
                if v["id"].as_u64() == Some(id) {
                    if let Some(e) = v.get("error") {
                        panic!("{method} failed: {e}");
                    }
                    return v["result"].clone();
                }
                if v.get("method").is_some() {
                    self.events.push_back(v);
                }
            }
        }
        panic!("no answer to {method}");
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(None, method, params);
        self.wait_result(id, method)
    }

    /// A command to the tab.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        let id = self.send(Some(&s), method, params);
        self.wait_result(id, method)
    }

    /// Loads `url`, waits for its load event and then `settle` more (for pages that fetch
    /// their content with scripts), and reports the console's complaints meanwhile.
    pub fn visit(&mut self, url: &str, settle: Duration) -> Visit {
        self.events.clear();
        let nav = self.call("Page.navigate", json!({"url": url}));
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            return Visit {
                problems: vec![format!("navigation failed: {e}")],
            };
        }
        let mut loaded = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut settle_until: Option<Instant> = None;
        let mut problems = Vec::new();
        loop {
            while let Some(ev) = self.events.pop_front() {
                if let Some(p) = problem(&ev) {
                    problems.push(p);
                }
                if ev["method"] == "Page.loadEventFired" {
                    loaded = true;
                }
            }
            if loaded && settle_until.is_none() {
                settle_until = Some(Instant::now() + settle);
            }
            if settle_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            assert!(Instant::now() < deadline, "{url} did not finish loading");
            if let Some(v) = self.read() {
                if v.get("method").is_some() {
                    self.events.push_back(v);
                }
            }
        }
        Visit { problems }
    }

    /// Evaluates `expr` in the page; its value (JSON-serialisable).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Every link of the page, absolute (`a[href]`, and `href` of SVG links).
    pub fn links(&mut self) -> Vec<String> {
        let v = self.eval(
            "Array.from(document.querySelectorAll('a[href]')).map(a => (a.href && a.href.baseVal !== undefined) ? new URL(a.href.baseVal, location.href).href : a.href)",
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The serialised DOM.
    pub fn html(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A screenshot of the whole page (at most `max_height` pixels tall), `width` wide.
    pub fn screenshot(&mut self, path: &Path, width: u32, max_height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let h = m["cssContentSize"]["height"]
            .as_f64()
            .or_else(|| m["contentSize"]["height"].as_f64())
            .unwrap_or(900.0)
            .clamp(200.0, max_height as f64);
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": h, "scale": 1}
            }),
        );
        let data = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        std::fs::write(path, data).expect("write screenshot");
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
    }
}

/// A console complaint in a DevTools event, if it is one.
fn problem(ev: &Value) -> Option<String> {
    let p = &ev["params"];
    match ev["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let ty = p["type"].as_str().unwrap_or("");
            if ty == "error" || ty == "warning" || ty == "assert" {
                let text: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"]
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x["description"].to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(format!("console.{ty}: {}", text.join(" ")))
            } else {
                None
            }
        }
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            p["exceptionDetails"]["exception"]["description"]
                .as_str()
                .or_else(|| p["exceptionDetails"]["text"].as_str())
                .unwrap_or("?")
        )),
        "Log.entryAdded" => {
            let e = &p["entry"];
            let level = e["level"].as_str().unwrap_or("");
            (level == "error" || level == "warning").then(|| {
                format!(
                    "log.{level} ({}): {} {}",
                    e["source"].as_str().unwrap_or(""),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                )
            })
        }
        _ => None,
    }
}

/// Writes a page showing `left` and `right` side by side with captions, for `Browser` to
/// screenshot into one picture.
pub fn side_by_side_html(dir: &Path, left: (&str, &Path), right: (&str, &Path)) -> PathBuf {
    let page = dir.join(format!(
        "compare-{}.html",
        left.1.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ));
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{{margin:0;display:flex;gap:16px;background:#e5e8ec;font:14px sans-serif;align-items:flex-start}}figure{{margin:0;background:#fff;flex:1}}figcaption{{padding:6px 10px;font-weight:600;background:#2d3a4a;color:#fff}}img{{display:block;width:100%}}</style></head><body><figure><figcaption>{}</figcaption><img src=\"{}\"></figure><figure><figcaption>{}</figcaption><img src=\"{}\"></figure></body></html>",
        left.0,
        left.1.file_name().and_then(|s| s.to_str()).unwrap_or(""),
        right.0,
        right.1.file_name().and_then(|s| s.to_str()).unwrap_or(""),
    );
    std::fs::write(&page, html).expect("write comparison page");
    page
}
