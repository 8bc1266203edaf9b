//! Prometheus for real: `promtool check metrics` accepts the exposition, and
//! a real Prometheus server (Debian's `prometheus`, installed by .ci/run) on
//! loopback, run with deploy/prometheus's config and alert rules (targets
//! pointed at a running Parapet), scrapes it; its HTTP API then answers for
//! Parapet's request counter and has loaded the rules without errors.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn promtool_accepts_the_metrics() {
    let Some(promtool) = external_tool(&["promtool"], "prometheus") else {
        return;
    };
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - {upstream: o, cache: {enabled: true}}\n",
    );
    p.get("/warm", &[]);
    let metrics = p.metrics();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {report}");
    assert!(report.trim().is_empty(), "promtool has remarks: {report}");
}

struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_parapet() {
    let Some(prometheus) = external_tool(&["prometheus"], "prometheus") else {
        return;
    };
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    for _ in 0..3 {
        assert_eq!(p.get("/counted", &[]).status, 200);
    }
    let dir = temp_dir("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::copy(format!("{deploy}/alerts.yml"), dir.join("alerts.yml")).unwrap();
    let shipped = std::fs::read_to_string(format!("{deploy}/prometheus.yml")).unwrap();
    let targets = "[\"edge1:9901\", \"edge2:9901\"]";
    assert!(
        shipped.contains(targets),
        "deploy/prometheus/prometheus.yml changed its targets"
    );
    std::fs::write(
        &config,
        shipped
            .replace(targets, &format!("[\"{}\"]", p.admin_addr()))
            .replace("scrape_interval: 5s", "scrape_interval: 1s")
            .replace("scrape_timeout: 4s", "scrape_timeout: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s"),
    )
    .unwrap();
    let port = free_port();
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prom = Prometheus(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Option<String> {
        let r = request(web, "GET", &format!("/api/v1/{q}"), &[], b"").ok()?;
        (r.status == 200).then(|| r.text())
    };
    let logs = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let mut last = String::new();
    let deadline = Duration::from_secs(60);
    let started = std::time::Instant::now();
    loop {
        if let Some(body) = query("query?query=sum(parapet_requests_total)") {
            // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[t,"3"]}]}}
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
                assert_eq!(value, "3", "Prometheus sees Parapet's request counter");
                break;
            }
            last = body;
        }
        if let Ok(Some(status)) = prom.0.try_wait() {
            panic!("prometheus exited ({status}):\n{}", logs());
        }
        assert!(
            started.elapsed() < deadline,
            "no scrape within {deadline:?}; last answer {last}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let targets: serde_json::Value =
        serde_json::from_str(&query("targets").expect("targets")).unwrap();
    assert_eq!(targets["data"]["activeTargets"][0]["health"], "up");
    let rules: serde_json::Value = serde_json::from_str(&query("rules").expect("rules")).unwrap();
    let names = rules.to_string();
    assert!(
        rules["data"]["groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty()),
        "alert rules loaded: {names}\n{}",
        logs()
    );
    for err in ["\"health\":\"err\"", "lastError\":\"e"] {
        assert!(!names.contains(err), "a rule fails to evaluate: {names}");
    }
}
