//! The `keyviz node` command line: configuration errors and a clean stop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Reply, Resp, free_port};

#[test]
fn invalid_configuration_exits_nonzero_and_prints_the_error_chain_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyviz"))
        .args(["node", "--groups", "0"])
        .env("KEYVIZ_LOG", "off")
        .output()
        .expect("run keyviz");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("keyviz: ").count(), 1, "printed once: {err}");
    assert!(
        err.contains("invalid node configuration: invalid groups"),
        "{err}"
    );
}

#[test]
fn node_runs_from_a_toml_file_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (resp, raft) = (free_port(), free_port());
    let config = dir.path().join("node.toml");
    let text = format!(
        "node_id = 1\nresp_addr = \"127.0.0.1:{resp}\"\nraft_addr = \"127.0.0.1:{raft}\"\ndata_dir = \"{}\"\ngroups = 2\nstep_ms = 1000\nfsync = false\n",
        dir.path().join("data").display()
    );
    std::fs::write(&config, text).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyviz"))
        .arg("node")
        .arg("--config")
        .arg(&config)
        .env("KEYVIZ_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keyviz node");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Resp::connect(resp).and_then(|mut c| c.call(&["SET", "from-toml", "1"]));
        if matches!(r, Ok(Reply::Simple(ref ok)) if ok == "OK") {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "node from {} never accepted a write: {r:?}",
                config.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node did not stop within 15s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}
