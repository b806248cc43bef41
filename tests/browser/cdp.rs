//! Headless Chromium for the dashboard's browser test: finding the binary, launching it with a
//! DevTools port (killed on drop), and a minimal blocking DevTools-protocol client over a
//! websocket written by hand (text frames, client-masked; no websocket crate needed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|b| {
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|d| Path::new(d).join(b))
                .collect::<Vec<_>>()
        })
        .find(|p| p.is_file())
}

/// Headless Chromium with a DevTools port, killed on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    pub fn launch(bin: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1600,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let file = profile.path().join("DevToolsActivePort");
        let t = Instant::now();
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&file)
                && let Some(p) = s.lines().next().and_then(|l| l.trim().parse().ok())
            {
                break p;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromium did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// The first page target's DevTools connection.
    pub fn page(&self) -> Cdp {
        let list = http_get(&format!("127.0.0.1:{}", self.port), "/json/list");
        let targets: Value = serde_json::from_str(&list).unwrap();
        let ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        Cdp::connect(&ws)
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // DevTools keeps the connection open: read the headers, then Content-Length bytes
    let mut s = BufReader::new(s);
    let mut len = 0;
    loop {
        let mut l = String::new();
        s.read_line(&mut l).unwrap();
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
        if l == "\r\n" || l.is_empty() {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// A minimal DevTools protocol client over a websocket (text frames, client-masked).
pub struct Cdp {
    s: BufReader<TcpStream>,
    id: u64,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").unwrap();
        let (addr, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut s = BufReader::new(s);
        let mut status = String::new();
        s.read_line(&mut status).unwrap();
        assert!(status.contains(" 101 "), "websocket upgrade: {status}");
        loop {
            let mut l = String::new();
            s.read_line(&mut l).unwrap();
            if l == "\r\n" {
                break;
            }
        }
        Cdp { s, id: 0 }
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.get_mut().write_all(&f).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut msg = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let mut n = (h[1] & 0x7f) as u64;
            if n == 126 {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                n = u16::from_be_bytes(b) as u64;
            } else if n == 127 {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                n = u64::from_be_bytes(b);
            }
            let mut p = vec![0u8; n as usize];
            self.s.read_exact(&mut p).unwrap();
            match opcode {
                9 => self.send_frame(10, &p),
                8 => panic!("DevTools closed the connection"),
                _ => {
                    msg.extend_from_slice(&p);
                    if fin {
                        return serde_json::from_slice(&msg).unwrap();
                    }
                }
            }
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let req = json!({"id": self.id, "method": method, "params": params});
        self.send_frame(1, req.to_string().as_bytes());
        loop {
            let m = self.recv();
            if m["id"] == self.id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// Evaluates a JS expression in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Polls `expr` until it is true.
    pub fn wait_for(&mut self, expr: &str, secs: u64) {
        let t = Instant::now();
        while self.eval(&format!(
            "(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()"
        )) != json!(true)
        {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {expr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&mut self, path: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        std::fs::write(path, base64_decode(r["data"].as_str().unwrap())).unwrap();
        println!("screenshot: {path}");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for ch in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in ch.iter().enumerate() {
            n |= (val(*c) as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..ch.len()]);
    }
    out
}
