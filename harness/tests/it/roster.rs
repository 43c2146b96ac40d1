//! The roster of a large meeting: `welcome` lists its first page and says how many are
//! there; `roster_page` brings the rest, a page at a time, at a bounded rate.
use std::collections::BTreeSet;
use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use signaling::{ROSTER_PAGE, ServerMsg};

/// The next `roster_page` or `error` on `ws` (roster changes and the rest skipped).
async fn answer(ws: &mut crate::Session) -> ServerMsg {
    loop {
        if let m @ (ServerMsg::RosterPage { .. } | ServerMsg::Error { .. }) =
            crate::next_msg(ws).await
        {
            return m;
        }
    }
}

async fn ask(ws: &mut crate::Session, text: String) {
    ws.send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_welcome_lists_the_first_page_and_the_count_and_roster_pages_bring_the_rest_at_a_bounded_rate()
 {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = crate::Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "lecture" })).await;
    // 130 sessions without media (signaling only): the last one is told of 129 others.
    let mut sessions = Vec::new();
    let mut ids = Vec::new();
    for i in 0..130 {
        let (status, joined) = api
            .join(&base, &meeting, json!({ "name": format!("Student {i}") }))
            .await;
        assert!(status.is_success(), "join {i}: {status} {joined}");
        ids.push(joined["participant_id"].as_str().unwrap().to_owned());
        sessions.push(crate::open_session(&joined).await);
    }
    let (mut ws, welcome) = sessions.pop().unwrap();
    let others: BTreeSet<String> = ids[..129].iter().cloned().collect();
    assert_eq!(welcome.participant_count, 129, "the count is everyone else");
    assert_eq!(
        welcome.participants.len(),
        ROSTER_PAGE,
        "the welcome lists one page"
    );
    assert!(
        welcome
            .participants
            .windows(2)
            .all(|w| w[0].joined_unix_ms <= w[1].joined_unix_ms),
        "in the order they joined"
    );

    // The next page: the other 29, none listed twice.
    ask(
        &mut ws,
        json!({ "type": "roster_page", "from": ROSTER_PAGE }).to_string(),
    )
    .await;
    let ServerMsg::RosterPage {
        from,
        total,
        participants,
    } = answer(&mut ws).await
    else {
        panic!("a roster page");
    };
    assert_eq!((from, total, participants.len()), (100, 129, 29));
    let listed: BTreeSet<String> = welcome
        .participants
        .iter()
        .chain(&participants)
        .map(|p| p.participant_id.clone())
        .collect();
    assert_eq!(listed, others, "two pages list everyone else once");

    // Past the end: an empty page, the count still right.
    ask(
        &mut ws,
        json!({ "type": "roster_page", "from": 4_000_000_000u32 }).to_string(),
    )
    .await;
    assert!(matches!(
        answer(&mut ws).await,
        ServerMsg::RosterPage { total: 129, ref participants, .. } if participants.is_empty()
    ));
    // A negative start is not a page: a clear error.
    ask(&mut ws, r#"{"type":"roster_page","from":-1}"#.to_owned()).await;
    assert!(
        matches!(answer(&mut ws).await, ServerMsg::Error { ref in_reply_to, .. } if in_reply_to == "roster_page"),
        "a negative page is refused"
    );
    // A flood is cut short with an error, and the session goes on.
    for _ in 0..30 {
        ask(
            &mut ws,
            json!({ "type": "roster_page", "from": 0 }).to_string(),
        )
        .await;
    }
    let mut refused = 0;
    for _ in 0..30 {
        if matches!(answer(&mut ws).await, ServerMsg::Error { .. }) {
            refused += 1;
        }
    }
    assert!(refused >= 10, "{refused} of 30 pages refused");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ask(
        &mut ws,
        json!({ "type": "roster_page", "from": 0 }).to_string(),
    )
    .await;
    assert!(
        matches!(answer(&mut ws).await, ServerMsg::RosterPage { ref participants, .. } if participants.len() == ROSTER_PAGE),
        "a page again a second later"
    );
}
