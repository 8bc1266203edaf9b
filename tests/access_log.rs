//! The access log: JSON lines that parse, with the documented fields; the
//! combined format; a file that a reload reopens (logrotate moves the old
//! one away); sampling that still keeps every 5xx; and the off switch.

mod support;

use std::time::Duration;
use support::*;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn json_lines_to_a_file_reopened_on_reload() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let yaml = |generation: u32| {
        one_pool_config(
            &ports,
            &o.address(),
            &format!("routes:\n  - {{name: main, upstream: o, response_headers: {{set: {{X-Gen: \"{generation}\"}}}}}}\naccess_log:\n  path: \"{{dir}}/access.log\"\n"),
        )
    };
    let mut p = Parapet::supervise_with(&ports, &yaml(1));
    let log = p.dir().join("access.log");
    let r = p.get(
        "/a/b?x=1",
        &[
            ("User-Agent", "probe/1.0 \"quoted\""),
            ("Referer", "https://r.test/"),
        ],
    );
    let id = r.header("x-request-id").unwrap().to_string();
    wait_until(Duration::from_secs(5), "the line is written", || {
        !lines(&log).is_empty()
    });
    let line = &lines(&log)[0];
    let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "main");
    assert_eq!(v["upstream"], "o");
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["client_ip"], "127.0.0.1");
    assert_eq!(v["user_agent"], "probe/1.0 \"quoted\"");
    assert_eq!(v["referer"], "https://r.test/");
    assert_eq!(v["bytes"], r.body.len());
    assert_eq!(v["cache"], "-");
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        !line.contains(&o.addr().port().to_string()),
        "no backend address unless asked: {line}"
    );

    // logrotate: move the file away, reload; the new generation writes a
    // new file.
    let rotated = p.dir().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.write_config(&yaml(2));
    p.signal(SIGHUP);
    wait_until(
        Duration::from_secs(20),
        "only the new generation answers",
        || (0..10).all(|_| p.get("/x", &[]).header("x-gen") == Some("2")),
    );
    // The old generation may still accept a connection in its last
    // instant: follow a request the new generation answered.
    let mut n = 0;
    wait_until(
        Duration::from_secs(10),
        "a request answered by generation 2",
        || {
            n += 1;
            p.get(&format!("/after-rotation-{n}"), &[]).header("x-gen") == Some("2")
        },
    );
    let quoted = format!("\"/after-rotation-{n}\"");
    wait_until(Duration::from_secs(5), "the new file", || {
        lines(&log).iter().any(|l| l.contains(&quoted))
    });
    assert!(!lines(&rotated).iter().any(|l| l.contains(&quoted)));
    for l in lines(&log).iter().chain(lines(&rotated).iter()) {
        serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON");
    }
}

#[test]
fn combined_format_sampling_and_off() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let yaml = one_pool_config(
        &ports,
        &o.address(),
        "routes:\n  - upstream: o\naccess_log:\n  format: combined\n  sample: 0.25\n  path: \"{dir}/access.log\"\n",
    );
    let p = Parapet::start_with(&ports, &yaml);
    let log = p.dir().join("access.log");
    let mut c = Client::connect(p.addr());
    for i in 0..40 {
        c.get(&format!("/ok/{i}"), &[]);
    }
    for _ in 0..5 {
        c.get("/status/503", &[]);
    }
    wait_until(Duration::from_secs(5), "sampled lines", || {
        lines(&log).len() >= 15
    });
    let all = lines(&log);
    let errors = all.iter().filter(|l| l.contains("\" 503 ")).count();
    assert_eq!(errors, 5, "every 5xx is logged: {all:#?}");
    assert_eq!(all.len() - errors, 10, "one in four of the rest: {all:#?}");
    assert!(
        all[0].starts_with("127.0.0.1 - - ["),
        "combined format: {}",
        all[0]
    );

    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &one_pool_config(
            &ports,
            &o.address(),
            "routes:\n  - upstream: o\naccess_log:\n  enabled: false\n  path: \"{dir}/access.log\"\n",
        ),
    );
    p.get("/quiet", &[]);
    assert!(!p.logs().contains("/quiet"));
    assert!(lines(&p.dir().join("access.log")).is_empty());
}
