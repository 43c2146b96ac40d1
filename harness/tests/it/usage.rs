//! Usage statistics of an organisation against a real cluster with local accounts: a
//! day of known meetings (attendance written as the media nodes write it) gives exact
//! figures, by region and node, as JSON, CSV and the portal's chart; only the
//! organisation's administrators and operators may read them.
use reqwest::StatusCode;
use serde_json::json;

use crate::accounts::{
    Local, Session, call, local_cluster, make_accounts, portal_sign_in, sign_in, until,
};

/// Unix milliseconds of `h:m` UTC on 2 November 2026 (a Monday), or the next day with
/// `h` 24 and over.
fn nov2(h: i64, m: i64) -> i64 {
    1_793_577_600_000 + (h * 60 + m) * 60_000
}

/// Writes an attendance record as a media node does.
async fn attend(
    etcd: &mut etcd_client::Client,
    meeting: &str,
    name: &str,
    region: &str,
    span: (i64, i64),
) {
    use prost::Message;
    let participant = common::ids::ParticipantId::random();
    let record = proto::v1::AttendanceRecord {
        participant_id: participant.to_string(),
        name: name.into(),
        registrant_id: String::new(),
        role: "attendee".into(),
        region: region.into(),
        node_id: format!("{region}-media-1"),
        joined_unix_ms: span.0,
        left_unix_ms: span.1,
    };
    let ks = common::keyspace::Keyspace::new("/fjord");
    let id = common::ids::MeetingId::parse(meeting).unwrap();
    etcd.put(
        ks.attendance(&id, &participant),
        record.encode_to_vec(),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_statistics_of_a_day_with_known_meetings_are_exact_and_only_for_the_organisations_administrators()
 {
    assert_eq!(
        chrono::DateTime::from_timestamp_millis(nov2(0, 0))
            .unwrap()
            .to_rfc3339(),
        "2026-11-02T00:00:00+00:00"
    );
    let l = local_cluster().await;
    let Local {
        c,
        base,
        api,
        password,
        ..
    } = &l;
    let good = "a good long password";
    make_accounts(
        &l,
        &[
            ("bo@fjord.test", "Bo", false),
            ("eva@other.org", "Eva", true),
        ],
        good,
    )
    .await;
    let admin = sign_in(api, base, harness::LOCAL_ADMIN, password)
        .await
        .2
        .unwrap();
    let bo = sign_in(api, base, "bo@fjord.test", good).await.2.unwrap();
    let eva = sign_in(api, base, "eva@other.org", good).await.2.unwrap();
    let make = |s: &Session| {
        let (api, base) = (&api, &base);
        let (cookie, csrf) = (s.cookie.clone(), s.csrf.clone());
        async move {
            let s = Session { cookie, csrf };
            let (st, v) = call(
                api,
                &s,
                reqwest::Method::POST,
                format!("{base}/v1/meetings"),
                Some(json!({ "title": "Lecture" })),
                true,
            )
            .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let (a, b, elsewhere) = (make(&admin).await, make(&bo).await, make(&eva).await);

    // Two meetings of fjord.test on 2 November: Ada and Bo overlap Cy for a quarter of
    // an hour (peak 3), Ada comes back from Stockholm, Dag stays over midnight; a
    // meeting of other.org the same day does not count.
    let mut etcd = etcd_client::Client::connect(c.etcd.endpoints(), None)
        .await
        .unwrap();
    attend(&mut etcd, &a, "Ada", "oslo", (nov2(10, 0), nov2(11, 0))).await;
    attend(&mut etcd, &a, "Bo", "oslo", (nov2(10, 30), nov2(11, 30))).await;
    attend(
        &mut etcd,
        &a,
        "Ada",
        "stockholm",
        (nov2(12, 0), nov2(12, 15)),
    )
    .await;
    attend(&mut etcd, &b, "Cy", "oslo", (nov2(10, 45), nov2(11, 15))).await;
    attend(&mut etcd, &b, "Dag", "oslo", (nov2(23, 30), nov2(24, 30))).await;
    attend(
        &mut etcd,
        &elsewhere,
        "Eva",
        "oslo",
        (nov2(9, 0), nov2(17, 0)),
    )
    .await;

    let usage = |s: &Session, query: &str| {
        let req = api
            .http
            .get(format!("{base}/v1/usage?{query}"))
            .header("cookie", &s.cookie);
        api.send(req)
    };
    let (st, u) = usage(&admin, "period=day&from=2026-11-02&to=2026-11-03").await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["org"], "fjord.test");
    let day = &u["periods"][0];
    assert_eq!(
        [
            &day["start"],
            &day["meetings"],
            &day["participant_minutes"],
            &day["unique_participants"],
            &day["peak_concurrent"],
            &day["joins"]
        ],
        [
            &json!("2026-11-02"),
            &json!(2),
            &json!(195.0),
            &json!(4),
            &json!(3),
            &json!(5)
        ],
        "{day}"
    );
    assert_eq!(
        day["regions"],
        json!([
            { "region": "oslo", "meetings": 2, "participant_minutes": 180.0, "unique_participants": 4, "peak_concurrent": 3, "joins": 4 },
            { "region": "stockholm", "meetings": 1, "participant_minutes": 15.0, "unique_participants": 1, "peak_concurrent": 1, "joins": 1 },
        ]),
        "{day}"
    );
    assert_eq!(day["nodes"][0]["node_id"], "oslo-media-1", "{day}");
    let next = &u["periods"][1];
    assert_eq!(
        [
            &next["meetings"],
            &next["participant_minutes"],
            &next["joins"]
        ],
        [&json!(1), &json!(30.0), &json!(0)],
        "Dag's half hour after midnight: {next}"
    );
    assert_eq!(u["total"]["participant_minutes"], 225.0, "{u}");
    // A week: the same, in one period that starts on Monday.
    let (_, w) = usage(&admin, "period=week&from=2026-11-04&to=2026-11-04").await;
    assert_eq!(
        (
            &w["periods"][0]["start"],
            &w["periods"][0]["participant_minutes"]
        ),
        (&json!("2026-11-02"), &json!(225.0)),
        "{w}"
    );
    // CSV: a row for the whole day, then by region and node.
    let resp = api
        .http
        .get(format!(
            "{base}/v1/usage?period=day&from=2026-11-02&to=2026-11-02&format=csv"
        ))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "period_start,scope,region,node_id,meetings,participant_minutes,unique_participants,peak_concurrent,joins"
    );
    assert_eq!(lines[1], "2026-11-02,all,,,2,195,4,3,5", "{csv}");
    assert!(
        lines.contains(&"2026-11-02,region,stockholm,,1,15,1,1,1"),
        "{csv}"
    );

    // Only administrators, of their own organisation, and operators.
    let (st, v) = usage(&bo, "period=day").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = usage(&eva, "org=fjord.test").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = usage(&eva, "from=2026-11-02&to=2026-11-02").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["org"], &v["periods"][0]["participant_minutes"]),
        (&json!("other.org"), &json!(480.0)),
        "{v}"
    );
    let (st, _) = api.send(api.http.get(format!("{base}/v1/usage"))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = api
        .send(
            api.http
                .get(format!("{base}/v1/usage"))
                .bearer_auth(&api.key),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "an operator names the organisation: {v}"
    );
    let (st, v) = api
        .send(
            api.http
                .get(format!(
                    "{base}/v1/usage?org=fjord.test&from=2026-11-02&to=2026-11-02"
                ))
                .bearer_auth(&api.key),
        )
        .await;
    assert_eq!(
        (st, &v["periods"][0]["participant_minutes"]),
        (StatusCode::OK, &json!(195.0)),
        "{v}"
    );
    for (query, says) in [
        ("period=year", "period"),
        ("from=2026-13-01", "from"),
        ("from=2026-11-05&to=2026-11-01", "after"),
        ("time_zone=Mars/Olympus", "time_zone"),
        ("from=1900-01-01&to=2026-01-01", "at most"),
        ("colour=red", "unknown field"),
    ] {
        let (st, v) = usage(&admin, query).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(says),
            "{query}: {v}"
        );
    }

    // The portal's page: the table and a bar per day.
    let browser = harness::webdriver::Browser::start(&c.dir.join("logs"), "usage")
        .await
        .unwrap();
    browser.goto(&format!("{base}/portal")).await.unwrap();
    portal_sign_in(&browser, harness::LOCAL_ADMIN, password).await;
    until(
        &browser,
        "the usage section",
        "return !document.getElementById('usage').hidden",
    )
    .await;
    browser
        .eval(
            "document.getElementById('us-from').value = '2026-11-01'; \
             document.getElementById('us-to').value = '2026-11-03'; \
             document.getElementById('us-tz').value = 'UTC'; \
             document.getElementById('usage-form').requestSubmit();",
            json!([]),
        )
        .await
        .unwrap();
    until(
        &browser,
        "the day's figures and three bars, the tallest for 2 November",
        "const row = document.querySelector('#usage-table tr[data-start=\"2026-11-02\"]'); \
         const bars = [...document.querySelectorAll('#usage-chart rect')]; \
         const tallest = bars.reduce((a, b) => +b.getAttribute('height') > +a.getAttribute('height') ? b : a, bars[0]); \
         return !!row && row.textContent.startsWith('2026-11-02' + '2' + '195' + '4' + '3' + '5') \
           && bars.length === 3 && tallest.dataset.start === '2026-11-02' \
           && document.getElementById('usage-csv').href.includes('from=2026-11-01');",
    )
    .await;
}
