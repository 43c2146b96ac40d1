//! Logs an incident can use: JSON lines on request, no colour codes in files, and a
//! join's ids on every line about it, from the controller's placement to the node's
//! session end; never a name, password or key.
use std::path::Path;
use std::time::Duration;

use harness::eventually;
use serde_json::{Value, json};

use crate::Api;

/// The log of process `name` of the cluster, as written so far.
fn log_of(c: &harness::Cluster, name: &str) -> String {
    std::fs::read_to_string(c.dir.join(format!("logs/{name}.log"))).unwrap_or_default()
}

/// Every line of `text` as JSON; fails naming the first line that is not.
fn json_lines(text: &str, file: &Path) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: a line is not JSON ({e}): {l}", file.display()))
        })
        .collect()
}

/// The lines whose message is `message` and whose fields or span name the meeting and
/// the participant.
fn about<'a>(
    lines: &'a [Value],
    message: &str,
    meeting: &str,
    participant: &str,
) -> Vec<&'a Value> {
    let field = |l: &Value, k: &str| {
        l["span"][k]
            .as_str()
            .or_else(|| l["fields"][k].as_str())
            .map(str::to_owned)
    };
    lines
        .iter()
        .filter(|l| l["fields"]["message"].as_str() == Some(message))
        .filter(|l| field(l, "meeting_id").as_deref() == Some(meeting))
        .filter(|l| field(l, "participant_id").as_deref() == Some(participant))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_a_joins_ids_from_placement_to_session_end_and_no_secrets() {
    let c = harness::Cluster::start(harness::ClusterSpec {
        controllers: 1,
        media: vec![crate::node("media-oslo-1", "oslo")],
        log_format: "json",
        ..crate::spec()
    })
    .await
    .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (name, password) = ("Ingrid Quillfeather", "correct-horse-battery-9");
    let meeting = api
        .create(&base, json!({ "title": "logs", "password": password }))
        .await;
    let bot = bot::Bot::join(
        bot::BotConfig {
            controller: base.clone(),
            meeting: meeting.clone(),
            name: name.into(),
            password: Some(password.into()),
            host_key: None,
            panelist_key: None,
            registrant_key: None,
            region: Some("oslo".into()),
            publish: None,
            signal_ca: None,
            view: None,
        },
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let participant = bot.participant_id.clone();
    bot.leave().await;

    let node_log = c.dir.join("logs/media-oslo-1.log");
    let node_lines = eventually(
        Duration::from_secs(10),
        "the session's end in the node's log",
        || async {
            let lines = json_lines(&log_of(&c, "media-oslo-1"), &node_log);
            (!about(&lines, "session ended", &meeting, &participant).is_empty()).then_some(lines)
        },
    )
    .await
    .unwrap();
    for message in ["session started", "media connected"] {
        assert!(
            !about(&node_lines, message, &meeting, &participant).is_empty(),
            "no {message:?} line with the join's ids in {}",
            node_log.display()
        );
    }
    let ended = about(&node_lines, "session ended", &meeting, &participant);
    assert_eq!(
        ended[0]["fields"]["reason"], "the client left",
        "{}",
        ended[0]
    );

    let controller_log = c.dir.join("logs/controller-1.log");
    let lines = json_lines(&log_of(&c, "controller-1"), &controller_log);
    let placed = about(&lines, "placed the meeting in oslo", &meeting, &participant);
    assert_eq!(placed.len(), 1, "the placement, with the join's ids");
    assert_eq!(placed[0]["fields"]["node"], "media-oslo-1");
    let joined = about(&lines, "joined", &meeting, &participant);
    assert_eq!(joined.len(), 1, "the join, with its ids");

    for (file, text) in [
        (&controller_log, log_of(&c, "controller-1")),
        (&node_log, log_of(&c, "media-oslo-1")),
    ] {
        for secret in [name, password, c.operator_key.as_str()] {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                file.display()
            );
        }
    }
}

/// Text logs (the default) written to a file carry no ANSI colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_written_to_a_file_have_no_colour_codes() {
    let c = harness::Cluster::start(harness::ClusterSpec {
        controllers: 1,
        media: vec![crate::node("media-oslo-1", "oslo")],
        ..crate::spec()
    })
    .await
    .unwrap();
    for name in ["controller-1", "media-oslo-1"] {
        let text = log_of(&c, name);
        assert!(text.contains("INFO"), "{name} logged nothing: {text}");
        assert!(
            !text.contains('\u{1b}'),
            "{name}'s log has escape codes: {text}"
        );
    }
}
