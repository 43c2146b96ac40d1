//! Polls, Q&A and reactions through the signaling protocol, with webrtc-rs bots on two
//! cascaded media nodes (polls and Q&A live in the meeting's collab record in etcd,
//! which every node of the meeting follows and writes; reactions ride the relay), and
//! the hosts' exports.
use std::time::Duration;

use harness::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Api;
use crate::hosts::{errors, host, start};

/// A listening guest, from `region`.
async fn guest(base: &str, meeting: &str, name: &str, region: &str) -> bot::Bot {
    crate::join_bot(base, meeting, name, Some(region), None).await
}

/// The newest message of `kind` that `b` got, once `pred` holds for it.
async fn newest(b: &bot::Bot, kind: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(10), what, || async {
        b.events(kind).pop().filter(|m| pred(m))
    })
    .await
    .unwrap()
}

/// An export of the meeting's `what` (`polls`, `questions`) in `format`, read with `key`.
async fn export(
    api: &Api,
    base: &str,
    meeting: &str,
    key: &str,
    what: &str,
    format: &str,
) -> (StatusCode, String) {
    let resp = api
        .http
        .get(format!(
            "{base}/v1/meetings/{meeting}/{what}?format={format}"
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polls_answered_on_two_nodes_are_counted_exported_and_kept_from_attendees_hands() {
    let (_c, api, base, meeting, key) = start(crate::oslo_and_bergen(), false).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    let guests = [
        guest(&base, &meeting, "Olga Oslo", "oslo").await,
        guest(&base, &meeting, "Odd Oslo", "oslo").await,
        guest(&base, &meeting, "Berit Bergen", "bergen").await,
    ];
    assert_eq!(guests[2].node_id, "media-bergen-1");
    let g = &guests[0];

    // An attendee can neither make, launch nor end a poll.
    g.send(json!({ "type": "poll_create", "question": "Mine?", "kind": "single", "options": ["a", "b"] }))
        .unwrap();
    h.send(json!({ "type": "poll_create", "question": "Lunch at noon?", "kind": "single", "options": ["Yes", "No"] }))
        .unwrap();
    let polls = newest(&h, "polls", "the host sees the draft", |m| {
        m["polls"][0]["state"] == "draft"
    })
    .await;
    assert_eq!(polls["polls"].as_array().unwrap().len(), 1, "{polls}");
    let id = polls["polls"][0]["poll_id"].as_u64().unwrap();
    for kind in ["poll_launch", "poll_end"] {
        g.send(json!({ "type": kind, "poll_id": id })).unwrap();
    }
    for kind in ["poll_create", "poll_launch", "poll_end"] {
        eventually(
            Duration::from_secs(5),
            "the attendee is refused",
            || async { errors(g, kind).pop() },
        )
        .await
        .unwrap();
    }
    assert!(
        g.events("polls")
            .iter()
            .all(|m| m["polls"].as_array().unwrap().is_empty()),
        "attendees never see a draft"
    );

    // Launched: everyone, on both nodes, is asked; each answers once.
    h.send(json!({ "type": "poll_launch", "poll_id": id }))
        .unwrap();
    for b in &guests {
        newest(b, "polls", "the open poll", |m| {
            m["polls"][0]["state"] == "open"
        })
        .await;
    }
    // Two choices in a single-choice poll: refused (and not counted as an answer).
    guests[1]
        .send(json!({ "type": "poll_answer", "poll_id": id, "choices": [0, 1] }))
        .unwrap();
    for (b, choice) in guests.iter().zip([0, 1, 0]) {
        b.send(json!({ "type": "poll_answer", "poll_id": id, "choices": [choice] }))
            .unwrap();
    }
    g.send(json!({ "type": "poll_answer", "poll_id": id, "choices": [1] }))
        .unwrap();
    let live = newest(&h, "polls", "all three answers counted", |m| {
        m["polls"][0]["results"]["answered"] == 3
    })
    .await;
    assert_eq!(
        live["polls"][0]["results"]["tally"],
        json!([2, 1]),
        "{live}"
    );
    for (b, why, what) in [
        (g, "answered poll", "a second answer is refused"),
        (
            &guests[1],
            "choose one option",
            "two choices in a single-choice poll",
        ),
    ] {
        eventually(Duration::from_secs(5), what, || async {
            errors(b, "poll_answer")
                .into_iter()
                .find(|e| e["message"].as_str().unwrap_or("").contains(why))
        })
        .await
        .unwrap();
    }
    assert!(
        guests.iter().all(|b| b
            .events("polls")
            .iter()
            .all(|m| m["polls"][0].get("results").is_none())),
        "no results for attendees before they are shared"
    );

    // Ended and shared: everyone sees the results, not who answered what.
    h.send(json!({ "type": "poll_end", "poll_id": id }))
        .unwrap();
    h.send(json!({ "type": "poll_share", "poll_id": id }))
        .unwrap();
    for b in &guests {
        let seen = newest(b, "polls", "the shared results", |m| {
            m["polls"][0]["shared"] == true
        })
        .await;
        assert_eq!(seen["polls"][0]["results"]["tally"], json!([2, 1]));
        assert!(seen["polls"][0]["results"].get("answers").is_none());
    }

    // An anonymous free-text poll: the answers are kept, who gave them is not.
    h.send(json!({ "type": "poll_create", "question": "One word for today?", "kind": "text", "anonymous": true }))
        .unwrap();
    let polls = newest(&h, "polls", "the second draft", |m| {
        m["polls"].as_array().unwrap().len() == 2
    })
    .await;
    let anon = polls["polls"][1]["poll_id"].as_u64().unwrap();
    h.send(json!({ "type": "poll_launch", "poll_id": anon }))
        .unwrap();
    for (b, word) in guests.iter().zip(["sunny", "busy", "long"]) {
        newest(b, "polls", "the anonymous poll", |m| {
            m["polls"][1]["state"] == "open"
        })
        .await;
        b.send(json!({ "type": "poll_answer", "poll_id": anon, "text": word }))
            .unwrap();
    }
    newest(&h, "polls", "three anonymous answers", |m| {
        m["polls"][1]["results"]["answered"] == 3
    })
    .await;

    // The exports: the named poll with names, the anonymous one with none, in JSON and CSV.
    let (st, body) = export(&api, &base, &meeting, &key, "polls", "json").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["polls"][0]["tally"], json!([2, 1]));
    let named: Vec<&str> = v["polls"][0]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 3, "{named:?}");
    assert!(named.contains(&"Berit Bergen"));
    assert_eq!(v["polls"][1]["texts"], json!(["busy", "long", "sunny"]));
    assert_eq!(v["polls"][1]["answers"], json!([]));
    let anon_json = v["polls"][1].to_string();
    let (st, csv) = export(&api, &base, &meeting, &key, "polls", "csv").await;
    assert_eq!(st, StatusCode::OK);
    let anon_rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with(&format!("{anon},")))
        .collect();
    assert_eq!(anon_rows.len(), 3, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("Berit Bergen") && l.starts_with(&format!("{id},")))
    );
    for b in &guests {
        let name = b.welcome["name"].as_str().unwrap();
        for shown in [anon_json.as_str()]
            .into_iter()
            .chain(anon_rows.iter().copied())
        {
            assert!(
                !shown.contains(&b.participant_id) && !shown.contains(name),
                "{name} in the anonymous poll's export: {shown}"
            );
        }
    }
    // Hosts and operators only; a bad format is a clear 400.
    let (st, _) = export(&api, &base, &meeting, "not-the-key", "polls", "json").await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
        "{st}"
    );
    let (st, body) = export(&api, &base, &meeting, &api.key, "polls", "xml").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn questions_go_by_votes_and_an_anonymous_askers_identity_is_in_no_message_or_export() {
    let (_c, api, base, meeting, key) = start(crate::oslo_and_bergen(), false).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    let asker = guest(&base, &meeting, "Nils Named", "oslo").await;
    let shy = guest(&base, &meeting, "Siri Secret", "bergen").await;
    let voter = guest(&base, &meeting, "Vera Voter", "bergen").await;
    let everyone = [&h, &asker, &shy, &voter];

    asker
        .send(json!({ "type": "question_ask", "text": "When is the next meeting?" }))
        .unwrap();
    newest(&h, "questions", "the first question", |m| {
        m["questions"].as_array().unwrap().len() == 1
    })
    .await;
    shy.send(
        json!({ "type": "question_ask", "text": "Can we see the budget?", "anonymous": true }),
    )
    .unwrap();
    let qs = newest(&voter, "questions", "both questions", |m| {
        m["questions"].as_array().unwrap().len() == 2
    })
    .await;
    let budget = qs["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["text"] == "Can we see the budget?")
        .unwrap()["question_id"]
        .clone();
    for b in [&voter, &asker] {
        b.send(json!({ "type": "question_upvote", "question_id": budget }))
            .unwrap();
    }
    voter
        .send(json!({ "type": "question_upvote", "question_id": budget }))
        .unwrap();
    for b in everyone {
        let qs = newest(b, "questions", "the budget question on top", |m| {
            m["questions"][0]["question_id"] == budget && m["questions"][0]["votes"] == 2
        })
        .await;
        assert_eq!(qs["questions"][0]["anonymous"], true);
        assert!(qs["questions"][0]["author_name"].is_null());
        assert_eq!(qs["questions"][1]["author_name"], "Nils Named");
    }
    eventually(
        Duration::from_secs(5),
        "a second upvote is refused",
        || async { errors(&voter, "question_upvote").pop() },
    )
    .await
    .unwrap();

    // Hosts answer, mark answered live and dismiss; an attendee cannot.
    asker
        .send(json!({ "type": "question_dismiss", "question_id": budget }))
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the attendee is refused",
        || async { errors(&asker, "question_dismiss").pop() },
    )
    .await
    .unwrap();
    h.send(json!({ "type": "question_answer", "question_id": budget, "text": "Yes, on Friday." }))
        .unwrap();
    let first = newest(&shy, "questions", "the answer", |m| {
        m["questions"][0]["answer"] == "Yes, on Friday."
    })
    .await;
    let named = first["questions"][1]["question_id"].clone();
    h.send(json!({ "type": "question_answer", "question_id": named, "live": true }))
        .unwrap();
    h.send(json!({ "type": "question_dismiss", "question_id": named }))
        .unwrap();
    newest(&voter, "questions", "the dismissed question is gone", |m| {
        m["questions"].as_array().unwrap().len() == 1
    })
    .await;
    let hosts_view = newest(&h, "questions", "hosts still see it, dismissed", |m| {
        m["questions"][1]["dismissed"] == true && m["questions"][1]["answered_live"] == true
    })
    .await;
    assert_eq!(hosts_view["questions"].as_array().unwrap().len(), 2);

    // The shy asker's id and name are in no questions message anyone got, nor exported.
    let secret = [shy.participant_id.as_str(), "Siri Secret"];
    for b in everyone {
        for m in b.events("questions") {
            let text = m.to_string();
            assert!(secret.iter().all(|s| !text.contains(s)), "{text}");
        }
    }
    for format in ["json", "csv"] {
        let (st, body) = export(&api, &base, &meeting, &key, "questions", format).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(
            body.contains("Can we see the budget?") && body.contains("Nils Named"),
            "{body}"
        );
        assert!(secret.iter().all(|s| !body.contains(s)), "{format}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reactions_reach_both_nodes_and_a_flood_or_an_unknown_emoji_is_refused() {
    let (_c, _api, base, meeting, key) = start(crate::oslo_and_bergen(), false).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    let far = guest(&base, &meeting, "Bjørn Bergen", "bergen").await;
    // Wait for the relay to carry the participants, then react from the far node.
    eventually(
        Duration::from_secs(15),
        "the host sees the far guest",
        || async {
            h.events("participant_joined")
                .into_iter()
                .find(|e| e["participant"]["participant_id"] == far.participant_id.as_str())
        },
    )
    .await
    .unwrap();
    far.send(json!({ "type": "reaction", "emoji": "👏" }))
        .unwrap();
    let got = eventually(
        Duration::from_secs(10),
        "the host sees the applause",
        || async { h.events("reaction").pop() },
    )
    .await
    .unwrap();
    assert_eq!(got["from"], far.participant_id.as_str());
    assert_eq!(got["emoji"], "👏");
    assert_eq!(got["name"], "Bjørn Bergen");

    h.send(json!({ "type": "reaction", "emoji": "<script>" }))
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "an unknown emoji is refused",
        || async { errors(&h, "reaction").pop() },
    )
    .await
    .unwrap();
    // Twenty at once: a few pass, the rest are refused, and the session goes on.
    for _ in 0..20 {
        h.send(json!({ "type": "reaction", "emoji": "🎉" }))
            .unwrap();
    }
    eventually(Duration::from_secs(5), "the flood is refused", || async {
        (errors(&h, "reaction").len() >= 14).then_some(())
    })
    .await
    .unwrap();
    // Each of the twenty is answered at the host: refused (an error, after the one for
    // the unknown emoji) or shown to everyone, the host too; the far node shows the same.
    let party_at = |b: &bot::Bot| {
        b.events("reaction")
            .iter()
            .filter(|r| r["emoji"] == "🎉")
            .count()
    };
    let answered = eventually(
        Duration::from_secs(10),
        "every reaction of the flood answered, and those that passed at the far node",
        || async {
            let passed = party_at(&h);
            (passed + errors(&h, "reaction").len() == 1 + 20 && party_at(&far) >= passed)
                .then_some(())
        },
    )
    .await;
    if let Err(e) = answered {
        eprintln!("{e}");
    }
    let party = far
        .events("reaction")
        .iter()
        .filter(|r| r["emoji"] == "🎉")
        .count();
    assert!((1..=6).contains(&party), "{party} reactions passed");
    h.send(json!({ "type": "chat", "text": "still here" }))
        .unwrap();
    eventually(Duration::from_secs(5), "the session goes on", || async {
        far.events("chat")
            .into_iter()
            .find(|c| c["text"] == "still here")
    })
    .await
    .unwrap();
}

/// A pen segment through `points` (board units).
fn pen(stroke_id: u32, points: &[i32]) -> Value {
    json!({ "type": "board_draw", "stroke_id": stroke_id, "tool": "pen", "color": "#1d3557", "width": 4, "points": points })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whiteboard_reaches_the_other_node_and_late_joiners_and_bad_or_flooding_input_gets_errors()
 {
    let (_c, _api, base, meeting, key) = start(crate::oslo_and_bergen(), false).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    let far = guest(&base, &meeting, "Frida Far", "bergen").await;
    eventually(Duration::from_secs(15), "the nodes are linked", || async {
        h.events("participant_joined")
            .into_iter()
            .find(|e| e["participant"]["participant_id"] == far.participant_id.as_str())
    })
    .await
    .unwrap();
    assert_eq!(
        h.events("board")[0]["ops"],
        json!([]),
        "an empty board at first"
    );

    // Two segments of one stroke and a rectangle reach the far node as they are sent.
    h.send(pen(1, &[100, 100, 150, 120, 200, 140])).unwrap();
    h.send(pen(1, &[200, 140, 260, 150])).unwrap();
    h.send(json!({ "type": "board_draw", "stroke_id": 2, "tool": "rect", "color": "#E63946", "width": 3, "points": [300, 300, 500, 400] }))
        .unwrap();
    far.send(json!({ "type": "board_draw", "stroke_id": 1, "tool": "text", "color": "#000000", "width": 8, "points": [50, 800], "text": "Agenda" }))
        .unwrap();
    let seen = eventually(
        Duration::from_secs(10),
        "the far guest gets the host's three",
        || async {
            let ops = far.events("board_draw");
            (ops.iter()
                .filter(|o| o["author"] == h.participant_id.as_str())
                .count()
                == 3)
                .then_some(ops)
        },
    )
    .await
    .unwrap();
    let mine: Vec<&Value> = seen
        .iter()
        .filter(|o| o["author"] == h.participant_id.as_str())
        .collect();
    assert_eq!(mine[0]["points"], json!([100, 100, 150, 120, 200, 140]));
    assert_eq!(mine[2]["tool"], "rect");
    assert_eq!(mine[2]["color"], "#e63946");
    eventually(
        Duration::from_secs(10),
        "the host gets the far text",
        || async {
            h.events("board_draw")
                .into_iter()
                .find(|o| o["text"] == "Agenda")
        },
    )
    .await
    .unwrap();

    // A late joiner on either node gets the whole board.
    for region in ["bergen", "oslo"] {
        let late = guest(&base, &meeting, &format!("Late {region}"), region).await;
        let board = eventually(Duration::from_secs(10), "the board on joining", || async {
            late.events("board")
                .pop()
                .filter(|b| b["ops"].as_array().unwrap().len() == 4)
        })
        .await;
        assert!(board.is_ok(), "{region}: {:?}", late.events("board"));
        late.leave().await;
    }

    // Undo takes the whole stroke, everywhere; only one's own.
    h.send(json!({ "type": "board_undo", "stroke_id": 1 }))
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the far guest sees the undo",
        || async {
            far.events("board_undo")
                .into_iter()
                .find(|u| u["stroke_id"] == 1 && u["author"] == h.participant_id.as_str())
        },
    )
    .await
    .unwrap();
    far.send(json!({ "type": "board_undo", "stroke_id": 2 }))
        .unwrap();

    // Bad input: each gets an error, and nothing is drawn.
    let too_long: Vec<i32> = (0..1002).map(|i| i % 900).collect();
    for bad in [
        pen(3, &too_long),
        pen(3, &[10, 10, 2000, 10]),
        pen(3, &[10]),
        json!({ "type": "board_draw", "stroke_id": 3, "tool": "pen", "color": "red", "width": 4, "points": [1, 1] }),
        json!({ "type": "board_draw", "stroke_id": 3, "tool": "spray", "color": "#000000", "width": 4, "points": [1, 1] }),
        json!({ "type": "board_draw", "stroke_id": 3, "tool": "text", "color": "#000000", "width": 4, "points": [1, 1], "text": "x".repeat(201) }),
    ] {
        far.send(bad).unwrap();
    }
    far.send(json!({ "type": "board_clear" })).unwrap();
    eventually(Duration::from_secs(5), "errors for all of them", || async {
        (errors(&far, "board_draw").len() == 6
            && errors(&far, "board_undo").len() == 1
            && errors(&far, "board_clear").len() == 1)
            .then_some(())
    })
    .await
    .unwrap();

    // A flood: the first 60 pass at once, the rest get errors; the session goes on.
    for i in 0..100 {
        far.send(pen(10 + i, &[10, 10, 20, 20])).unwrap();
    }
    eventually(Duration::from_secs(5), "the flood is refused", || async {
        (errors(&far, "board_draw").len() >= 6 + 30).then_some(())
    })
    .await
    .unwrap();

    // The host forbids attendees to draw, then clears the board: once, on both nodes.
    h.send(json!({ "type": "board_allow", "allowed": false }))
        .unwrap();
    newest(&far, "room", "the room says attendees may not draw", |r| {
        r["attendees_may_draw"] == false
    })
    .await;
    // The far session checks a stroke against the room it has just told of.
    let before = errors(&far, "board_draw").len();
    far.send(pen(500, &[1, 1, 2, 2])).unwrap();
    eventually(
        Duration::from_secs(5),
        "an attendee may not draw now",
        || async {
            errors(&far, "board_draw")
                .get(before)
                .filter(|e| {
                    e["message"]
                        .as_str()
                        .unwrap()
                        .contains("does not let attendees draw")
                })
                .cloned()
        },
    )
    .await
    .unwrap();
    h.send(json!({ "type": "board_clear" })).unwrap();
    eventually(
        Duration::from_secs(5),
        "the clear reaches the far node",
        || async { far.events("board_clear").pop() },
    )
    .await
    .unwrap();
    // Nothing more may come: a second is many times what a message takes across the
    // link and back, so an echo would have arrived.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        far.events("board_clear").len(),
        1,
        "a clear is not echoed back and forth"
    );
    assert_eq!(h.events("board_clear").len(), 1);
    let late = guest(&base, &meeting, "After the clear", "bergen").await;
    let board = newest(&late, "board", "the cleared board", |_| true).await;
    assert_eq!(board["ops"], json!([]));
}
