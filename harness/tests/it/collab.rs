//! Polls, Q&A and reactions through the signaling protocol, with webrtc-rs bots on two
//! cascaded media nodes (polls and Q&A live in the meeting's collab record in etcd,
//! which every node of the meeting follows and writes; reactions ride the relay), and
//! the hosts' exports.
use std::time::Duration;

use harness::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signaling::{BoardOp, ClientMsg, Question, ServerMsg};

use crate::Api;
use crate::hosts::{host, start};

/// A listening guest, from `region`.
async fn guest(base: &str, meeting: &str, name: &str, region: &str) -> bot::Bot {
    crate::join_bot(base, meeting, name, Some(region), None).await
}

/// The newest of what `read` takes from `b`'s messages (e.g. [`bot::Bot::polls`]), once
/// `pred` holds for it.
async fn newest<T>(
    b: &bot::Bot,
    read: impl Fn(&bot::Bot) -> Vec<T>,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    eventually(Duration::from_secs(10), what, || async {
        read(b).pop().filter(|m| pred(m))
    })
    .await
    .unwrap()
}

/// Every `questions` list `b` was sent, in order.
fn questions(b: &bot::Bot) -> Vec<Vec<Question>> {
    b.pick_events(|m| match m {
        ServerMsg::Questions { questions } => Some(questions.clone()),
        _ => None,
    })
}

/// Every whole `board` `b` was sent, in order.
fn boards(b: &bot::Bot) -> Vec<Vec<BoardOp>> {
    b.pick_events(|m| match m {
        ServerMsg::Board { ops } => Some(ops.clone()),
        _ => None,
    })
}

/// Every `board_draw` `b` was sent, in order.
fn board_draws(b: &bot::Bot) -> Vec<BoardOp> {
    b.pick_events(|m| match m {
        ServerMsg::BoardDraw(op) => Some(op.clone()),
        _ => None,
    })
}

/// Every `reaction` `b` was shown: who sent it (id, name) and the emoji, in order.
fn reactions(b: &bot::Bot) -> Vec<(String, String, String)> {
    b.pick_events(|m| match m {
        ServerMsg::Reaction {
            from, name, emoji, ..
        } => Some((from.clone(), name.clone(), emoji.clone())),
        _ => None,
    })
}

/// A poll's question, kind and options, as a host makes it.
fn poll_create(question: &str, kind: &str, options: &[&str], anonymous: bool) -> ClientMsg {
    ClientMsg::PollCreate {
        question: question.into(),
        kind: kind.into(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        anonymous,
    }
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
    g.send(poll_create("Mine?", "single", &["a", "b"], false))
        .unwrap();
    h.send(poll_create(
        "Lunch at noon?",
        "single",
        &["Yes", "No"],
        false,
    ))
    .unwrap();
    let polls = newest(&h, bot::Bot::polls, "the host sees the draft", |p| {
        p.first().is_some_and(|p| p.state == "draft")
    })
    .await;
    assert_eq!(polls.len(), 1, "{polls:?}");
    let id = polls[0].poll_id;
    for m in [
        ClientMsg::PollLaunch { poll_id: id },
        ClientMsg::PollEnd { poll_id: id },
    ] {
        g.send(m).unwrap();
    }
    for kind in ["poll_create", "poll_launch", "poll_end"] {
        eventually(
            Duration::from_secs(5),
            "the attendee is refused",
            || async { g.errors(kind).pop() },
        )
        .await
        .unwrap();
    }
    assert!(
        g.polls().iter().all(Vec::is_empty),
        "attendees never see a draft"
    );

    // Launched: everyone, on both nodes, is asked; each answers once.
    h.send(ClientMsg::PollLaunch { poll_id: id }).unwrap();
    for b in &guests {
        newest(b, bot::Bot::polls, "the open poll", |p| {
            p.first().is_some_and(|p| p.state == "open")
        })
        .await;
    }
    let answer = |choices: Vec<u32>| ClientMsg::PollAnswer {
        poll_id: id,
        choices,
        text: String::new(),
    };
    // Two choices in a single-choice poll: refused (and not counted as an answer).
    guests[1].send(answer(vec![0, 1])).unwrap();
    for (b, choice) in guests.iter().zip([0, 1, 0]) {
        b.send(answer(vec![choice])).unwrap();
    }
    g.send(answer(vec![1])).unwrap();
    let live = newest(&h, bot::Bot::polls, "all three answers counted", |p| {
        p.first()
            .and_then(|p| p.results.as_ref())
            .is_some_and(|r| r.answered == 3)
    })
    .await;
    assert_eq!(
        live[0].results.as_ref().map(|r| r.tally.as_slice()),
        Some(&[2, 1][..]),
        "{live:?}"
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
            b.errors("poll_answer")
                .into_iter()
                .find(|e| e.contains(why))
        })
        .await
        .unwrap();
    }
    assert!(
        guests.iter().all(|b| b
            .polls()
            .iter()
            .all(|p| p.first().is_none_or(|p| p.results.is_none()))),
        "no results for attendees before they are shared"
    );

    // Ended and shared: everyone sees the results, not who answered what.
    h.send(ClientMsg::PollEnd { poll_id: id }).unwrap();
    h.send(ClientMsg::PollShare { poll_id: id }).unwrap();
    for b in &guests {
        let seen = newest(b, bot::Bot::polls, "the shared results", |p| {
            p.first().is_some_and(|p| p.shared)
        })
        .await;
        let results = seen[0].results.as_ref();
        assert_eq!(
            results.map(|r| r.tally.as_slice()),
            Some(&[2, 1][..]),
            "{seen:?}"
        );
        assert!(results.is_none_or(|r| r.answers.is_none()), "{seen:?}");
    }

    // An anonymous free-text poll: the answers are kept, who gave them is not.
    h.send(poll_create("One word for today?", "text", &[], true))
        .unwrap();
    let polls = newest(&h, bot::Bot::polls, "the second draft", |p| p.len() == 2).await;
    let anon = polls[1].poll_id;
    h.send(ClientMsg::PollLaunch { poll_id: anon }).unwrap();
    for (b, word) in guests.iter().zip(["sunny", "busy", "long"]) {
        newest(b, bot::Bot::polls, "the anonymous poll", |p| {
            p.get(1).is_some_and(|p| p.state == "open")
        })
        .await;
        b.send(ClientMsg::PollAnswer {
            poll_id: anon,
            choices: vec![],
            text: word.into(),
        })
        .unwrap();
    }
    newest(&h, bot::Bot::polls, "three anonymous answers", |p| {
        p.get(1)
            .and_then(|p| p.results.as_ref())
            .is_some_and(|r| r.answered == 3)
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
        let name = b.welcome.name.as_str();
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
        .send(ClientMsg::QuestionAsk {
            text: "When is the next meeting?".into(),
            anonymous: false,
        })
        .unwrap();
    newest(&h, questions, "the first question", |q| q.len() == 1).await;
    shy.send(ClientMsg::QuestionAsk {
        text: "Can we see the budget?".into(),
        anonymous: true,
    })
    .unwrap();
    let qs = newest(&voter, questions, "both questions", |q| q.len() == 2).await;
    let budget = qs
        .iter()
        .find(|q| q.text == "Can we see the budget?")
        .unwrap()
        .question_id;
    for b in [&voter, &asker] {
        b.send(ClientMsg::QuestionUpvote {
            question_id: budget,
        })
        .unwrap();
    }
    voter
        .send(ClientMsg::QuestionUpvote {
            question_id: budget,
        })
        .unwrap();
    for b in everyone {
        let qs = newest(b, questions, "the budget question on top", |q| {
            q.first()
                .is_some_and(|q| q.question_id == budget && q.votes == 2)
        })
        .await;
        assert!(qs[0].anonymous);
        assert!(qs[0].author_name.is_none());
        assert_eq!(qs[1].author_name.as_deref(), Some("Nils Named"));
    }
    eventually(
        Duration::from_secs(5),
        "a second upvote is refused",
        || async { voter.errors("question_upvote").pop() },
    )
    .await
    .unwrap();

    // Hosts answer, mark answered live and dismiss; an attendee cannot.
    asker
        .send(ClientMsg::QuestionDismiss {
            question_id: budget,
        })
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the attendee is refused",
        || async { asker.errors("question_dismiss").pop() },
    )
    .await
    .unwrap();
    h.send(ClientMsg::QuestionAnswer {
        question_id: budget,
        text: "Yes, on Friday.".into(),
        live: false,
    })
    .unwrap();
    let first = newest(&shy, questions, "the answer", |q| {
        q.first()
            .is_some_and(|q| q.answer.as_deref() == Some("Yes, on Friday."))
    })
    .await;
    let named = first[1].question_id;
    h.send(ClientMsg::QuestionAnswer {
        question_id: named,
        text: String::new(),
        live: true,
    })
    .unwrap();
    h.send(ClientMsg::QuestionDismiss { question_id: named })
        .unwrap();
    newest(&voter, questions, "the dismissed question is gone", |q| {
        q.len() == 1
    })
    .await;
    let hosts_view = newest(&h, questions, "hosts still see it, dismissed", |q| {
        q.get(1).is_some_and(|q| q.dismissed && q.answered_live)
    })
    .await;
    assert_eq!(hosts_view.len(), 2);

    // The shy asker's id and name are in no questions message anyone got, nor exported.
    // (Each message as its text: the node writes every message from these types.)
    let secret = [shy.participant_id.as_str(), "Siri Secret"];
    for b in everyone {
        for m in b.events("questions") {
            let text = serde_json::to_string(&m).unwrap();
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
            h.participants_joined()
                .into_iter()
                .find(|p| p.participant_id == far.participant_id)
        },
    )
    .await
    .unwrap();
    let react = |emoji: &str| ClientMsg::Reaction {
        emoji: emoji.into(),
    };
    far.send(react("👏")).unwrap();
    let (from, name, emoji) = eventually(
        Duration::from_secs(10),
        "the host sees the applause",
        || async { reactions(&h).pop() },
    )
    .await
    .unwrap();
    assert_eq!(from, far.participant_id);
    assert_eq!(emoji, "👏");
    assert_eq!(name, "Bjørn Bergen");

    h.send(react("<script>")).unwrap();
    eventually(
        Duration::from_secs(5),
        "an unknown emoji is refused",
        || async { h.errors("reaction").pop() },
    )
    .await
    .unwrap();
    // Twenty at once: a few pass, the rest are refused, and the session goes on.
    for _ in 0..20 {
        h.send(react("🎉")).unwrap();
    }
    eventually(Duration::from_secs(5), "the flood is refused", || async {
        (h.errors("reaction").len() >= 14).then_some(())
    })
    .await
    .unwrap();
    // Each of the twenty is answered at the host: refused (an error, after the one for
    // the unknown emoji) or shown to everyone, the host too; the far node shows the same.
    let party_at = |b: &bot::Bot| {
        reactions(b)
            .iter()
            .filter(|(_, _, emoji)| emoji == "🎉")
            .count()
    };
    let answered = eventually(
        Duration::from_secs(10),
        "every reaction of the flood answered, and those that passed at the far node",
        || async {
            let passed = party_at(&h);
            (passed + h.errors("reaction").len() == 1 + 20 && party_at(&far) >= passed)
                .then_some(())
        },
    )
    .await;
    if let Err(e) = answered {
        eprintln!("{e}");
    }
    let party = reactions(&far)
        .iter()
        .filter(|(_, _, emoji)| emoji == "🎉")
        .count();
    assert!((1..=6).contains(&party), "{party} reactions passed");
    h.send(ClientMsg::Chat {
        text: "still here".into(),
    })
    .unwrap();
    eventually(Duration::from_secs(5), "the session goes on", || async {
        far.chat_texts().into_iter().find(|t| t == "still here")
    })
    .await
    .unwrap();
}

/// A `board_draw` of `tool` in `color` and `width` through `points` (board units).
fn draw(stroke_id: u32, tool: &str, color: &str, width: u32, points: &[i32]) -> ClientMsg {
    text_draw(stroke_id, tool, color, width, points, String::new())
}

/// [`draw`] with `text` (the text tool's).
fn text_draw(
    stroke_id: u32,
    tool: &str,
    color: &str,
    width: u32,
    points: &[i32],
    text: String,
) -> ClientMsg {
    ClientMsg::BoardDraw {
        stroke_id,
        tool: tool.into(),
        color: color.into(),
        width,
        points: points.to_vec(),
        text,
    }
}

/// A pen segment through `points` (board units).
fn pen(stroke_id: u32, points: &[i32]) -> ClientMsg {
    draw(stroke_id, "pen", "#1d3557", 4, points)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whiteboard_reaches_the_other_node_and_late_joiners_and_bad_or_flooding_input_gets_errors()
 {
    let (_c, _api, base, meeting, key) = start(crate::oslo_and_bergen(), false).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    let far = guest(&base, &meeting, "Frida Far", "bergen").await;
    eventually(Duration::from_secs(15), "the nodes are linked", || async {
        h.participants_joined()
            .into_iter()
            .find(|p| p.participant_id == far.participant_id)
    })
    .await
    .unwrap();
    assert_eq!(
        boards(&h)[0],
        Vec::<BoardOp>::new(),
        "an empty board at first"
    );

    // Two segments of one stroke and a rectangle reach the far node as they are sent.
    h.send(pen(1, &[100, 100, 150, 120, 200, 140])).unwrap();
    h.send(pen(1, &[200, 140, 260, 150])).unwrap();
    h.send(draw(2, "rect", "#E63946", 3, &[300, 300, 500, 400]))
        .unwrap();
    far.send(text_draw(
        1,
        "text",
        "#000000",
        8,
        &[50, 800],
        "Agenda".into(),
    ))
    .unwrap();
    let seen = eventually(
        Duration::from_secs(10),
        "the far guest gets the host's three",
        || async {
            let ops = board_draws(&far);
            (ops.iter().filter(|o| o.author == h.participant_id).count() == 3).then_some(ops)
        },
    )
    .await
    .unwrap();
    let mine: Vec<&BoardOp> = seen
        .iter()
        .filter(|o| o.author == h.participant_id)
        .collect();
    assert_eq!(mine[0].points, [100, 100, 150, 120, 200, 140]);
    assert_eq!(mine[2].tool, "rect");
    assert_eq!(mine[2].color, "#e63946");
    eventually(
        Duration::from_secs(10),
        "the host gets the far text",
        || async { board_draws(&h).into_iter().find(|o| o.text == "Agenda") },
    )
    .await
    .unwrap();

    // A late joiner on either node gets the whole board.
    for region in ["bergen", "oslo"] {
        let late = guest(&base, &meeting, &format!("Late {region}"), region).await;
        let board = eventually(Duration::from_secs(10), "the board on joining", || async {
            boards(&late).pop().filter(|ops| ops.len() == 4)
        })
        .await;
        assert!(board.is_ok(), "{region}: {:?}", late.events("board"));
        late.leave().await;
    }

    // Undo takes the whole stroke, everywhere; only one's own.
    h.send(ClientMsg::BoardUndo { stroke_id: 1 }).unwrap();
    eventually(
        Duration::from_secs(10),
        "the far guest sees the undo",
        || async {
            far.events("board_undo").into_iter().find(|u| {
                matches!(u, ServerMsg::BoardUndo { author, stroke_id: 1 }
                    if *author == h.participant_id)
            })
        },
    )
    .await
    .unwrap();
    far.send(ClientMsg::BoardUndo { stroke_id: 2 }).unwrap();

    // Bad input: each gets an error, and nothing is drawn.
    let too_long: Vec<i32> = (0..1002).map(|i| i % 900).collect();
    for bad in [
        pen(3, &too_long),
        pen(3, &[10, 10, 2000, 10]),
        pen(3, &[10]),
        draw(3, "pen", "red", 4, &[1, 1]),
        draw(3, "spray", "#000000", 4, &[1, 1]),
        text_draw(3, "text", "#000000", 4, &[1, 1], "x".repeat(201)),
    ] {
        far.send(bad).unwrap();
    }
    far.send(ClientMsg::BoardClear {}).unwrap();
    eventually(Duration::from_secs(5), "errors for all of them", || async {
        (far.errors("board_draw").len() == 6
            && far.errors("board_undo").len() == 1
            && far.errors("board_clear").len() == 1)
            .then_some(())
    })
    .await
    .unwrap();

    // A flood: the first 60 pass at once, the rest get errors; the session goes on.
    for i in 0..100 {
        far.send(pen(10 + i, &[10, 10, 20, 20])).unwrap();
    }
    eventually(Duration::from_secs(5), "the flood is refused", || async {
        (far.errors("board_draw").len() >= 6 + 30).then_some(())
    })
    .await
    .unwrap();

    // The host forbids attendees to draw, then clears the board: once, on both nodes.
    h.send(ClientMsg::BoardAllow { allowed: false }).unwrap();
    newest(
        &far,
        bot::Bot::rooms,
        "the room says attendees may not draw",
        |r| !r.attendees_may_draw,
    )
    .await;
    // The far session checks a stroke against the room it has just told of.
    let before = far.errors("board_draw").len();
    far.send(pen(500, &[1, 1, 2, 2])).unwrap();
    eventually(
        Duration::from_secs(5),
        "an attendee may not draw now",
        || async {
            far.errors("board_draw")
                .get(before)
                .filter(|e| e.contains("does not let attendees draw"))
                .cloned()
        },
    )
    .await
    .unwrap();
    h.send(ClientMsg::BoardClear {}).unwrap();
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
    let board = newest(&late, boards, "the cleared board", |_| true).await;
    assert_eq!(board, Vec::<BoardOp>::new());
}
