//! The SIP gateway with a real SIP peer, baresip (Debian's baresip-core): a room system
//! dials a meeting by URI and is joined like any participant, its tone heard in the
//! meeting and the meeting's tone recorded by it; a wrong meeting and an offer without a
//! codec in common are refused with their SIP answers; a host mutes it and its removal
//! hangs up on it.
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{Proc, eventually};
use reqwest::StatusCode;
use serde_json::json;
use signaling::ClientMsg;

/// Writes a WAV file of a `hz` tone: 48 kHz, mono, 16-bit, `secs` long.
fn tone_wav(path: &Path, hz: u32, secs: u32) {
    let n = 48_000 * secs;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = (8000.0
            * (2.0 * std::f64::consts::PI * f64::from(hz) * f64::from(i) / 48_000.0).sin())
            as i16;
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // the fmt chunk's length
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&48_000u32.to_le_bytes());
    wav.extend_from_slice(&(48_000u32 * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

/// The samples of a 16-bit PCM WAV file (channels mixed down) and its rate.
fn wav_samples(path: &Path) -> Option<(Vec<f32>, u32)> {
    let b = std::fs::read(path).ok()?;
    let (mut channels, mut rate) = (1usize, 8000u32);
    let mut at = 12;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().ok()?) as usize;
        let body = &b[at + 8..(at + 8 + len).min(b.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]])).max(1);
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
        } else if id == b"data" {
            let frames: Vec<f32> = body
                .chunks_exact(2 * channels)
                .map(|f| {
                    f.chunks_exact(2)
                        .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum::<f32>()
                        / channels as f32
                })
                .collect();
            return Some((frames, rate));
        }
        at += 8 + len + (len & 1);
    }
    None
}

/// A baresip that dials `uri` from `127.0.0.1:<port>` as `display`, playing a `hz` tone
/// and recording what it hears into `<dir>/rec`; offering `codecs`.
fn baresip(
    dir: &Path,
    display: &str,
    port: u16,
    uri: &str,
    hz: u32,
    codecs: &str,
    log: &Path,
) -> Proc {
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    let tone = dir.join("tone.wav");
    tone_wav(&tone, hz, 40);
    std::fs::write(
        dir.join("config"),
        format!(
            "module_path /usr/lib/baresip/modules\n\
             sip_listen 127.0.0.1:{port}\n\
             net_interface 127.0.0.1\n\
             audio_source aufile,{}\n\
             ausrc_srate 48000\n\
             ausrc_channels 1\n\
             snd_path {}\n\
             module opus.so\nmodule g711.so\nmodule gsm.so\nmodule aufile.so\nmodule sndfile.so\n\
             module_tmp account.so\nmodule_app menu.so\n",
            tone.display(),
            dir.join("rec").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("\"{display}\" <sip:room@127.0.0.1>;regint=0;audio_codecs={codecs}\n"),
    )
    .unwrap();
    Proc::spawn_args(
        &format!("baresip-{port}"),
        Path::new("/usr/bin/baresip"),
        vec![
            "-f".into(),
            dir.display().to_string(),
            "-e".into(),
            format!("/dial {uri}"),
        ],
        log,
    )
    .unwrap()
}

/// A port for baresip's SIP: it listens on UDP and TCP there and on TCP one above (for
/// TLS), so both are reserved.
fn baresip_port() -> u16 {
    let mut last = harness::free_port();
    loop {
        let next = harness::free_port();
        if next == last + 1 {
            return last;
        }
        last = next;
    }
}

/// Whether `log` holds `text`.
fn logged(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
}

/// Sends OPTIONS to the gateway over UDP until it answers 200 (it is up).
async fn options_answered(port: u16) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    for i in 0..100 {
        let msg = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-fjord-{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:test@{me}>;tag=t{i}\r\nTo: <sip:ping@127.0.0.1:{port}>\r\n\
             Call-ID: ping-{i}@fjord\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        socket
            .send_to(msg.as_bytes(), ("127.0.0.1", port))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
            && buf[..n].starts_with(b"SIP/2.0 200")
        {
            return;
        }
    }
    panic!("the SIP gateway did not answer OPTIONS in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn baresip_dials_a_meeting_by_uri_in_opus_and_g711_is_heard_hears_it_and_a_host_mutes_and_removes_it()
 {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let base = c.controllers[0].url();
    let api = crate::Api::new(&c);
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Room call", "waiting_room": false })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (meeting, host_key) = (
        v["id"].as_str().unwrap().to_owned(),
        v["host_key"].as_str().unwrap().to_owned(),
    );

    let sip_port = harness::free_port();
    let metrics_port = harness::free_port();
    let logs = c.dir.join("logs");
    let config = c.dir.join("sip-gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen_udp = \"127.0.0.1:{sip_port}\"\nlisten_tcp = \"127.0.0.1:{sip_port}\"\n\
             media_ip = \"127.0.0.1\"\ncontroller = \"{base}\"\n\
             name = \"sip-oslo-1\"\nregion = \"oslo\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
        ),
    )
    .unwrap();
    let gateway_log = logs.join("sip-gateway.log");
    let _gateway = Proc::spawn(
        "sip-gateway",
        &harness::bin_path("fjord-sip-gateway").unwrap(),
        &config,
        &gateway_log,
    )
    .unwrap();
    options_answered(sip_port).await;

    // An INVITE flood from one address (127.0.0.2): past its allowance, 503 with
    // Retry-After, answered without a join; other addresses are not held up by it.
    let flooder = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let me = flooder.local_addr().unwrap();
    for i in 0..40 {
        let msg = format!(
            "INVITE sip:{meeting}@127.0.0.1:{sip_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-flood-{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:flood@{me}>;tag=f{i}\r\nTo: <sip:{meeting}@127.0.0.1>\r\n\
             Call-ID: flood-{i}@fjord\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{me}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        flooder
            .send_to(msg.as_bytes(), ("127.0.0.1", sip_port))
            .await
            .unwrap();
    }
    let mut finals: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(2), flooder.recv_from(&mut buf)).await
    {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let line = text.lines().next().unwrap_or_default().to_owned();
        let call = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or_default()
            .to_owned();
        if !line.contains(" 100 ") && !finals.iter().any(|f| f.ends_with(&call)) {
            if line.contains(" 503 ") {
                assert!(text.contains("Retry-After:"), "{text}");
            }
            finals.push(format!("{line} {call}"));
        }
    }
    let limited = finals.iter().filter(|f| f.contains(" 503 ")).count();
    let refused = finals.iter().filter(|f| f.contains(" 488 ")).count();
    assert_eq!(limited + refused, 40, "{finals:#?}");
    assert!(
        (15..=22).contains(&limited),
        "{limited} of 40 limited: {finals:#?}"
    );

    // The host, speaking at 440 Hz.
    let host = crate::hosts::host(&base, &meeting, &host_key, None, 440).await;

    // A name that is no meeting, and an offer of no codec we take (GSM): refused, with
    // the reason.
    let dirs = tempfile::tempdir().unwrap();
    let wrong_log = logs.join("baresip-wrong.log");
    let _wrong = baresip(
        &dirs.path().join("wrong"),
        "Lost",
        baresip_port(),
        &format!("sip:zzz-zzzz-zzz@127.0.0.1:{sip_port}"),
        660,
        "opus/48000/2",
        &wrong_log,
    );
    let gsm_log = logs.join("baresip-gsm.log");
    let _gsm = baresip(
        &dirs.path().join("gsm"),
        "GSM phone",
        baresip_port(),
        &format!("sip:{meeting}@127.0.0.1:{sip_port}"),
        660,
        "GSM",
        &gsm_log,
    );
    // A meeting with a password, dialled with the wrong one.
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Locked room", "password": "right-pw", "waiting_room": false })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let pw_log = logs.join("baresip-password.log");
    let _pw = baresip(
        &dirs.path().join("password"),
        "Guesser",
        baresip_port(),
        &format!(
            "sip:{}.wrong-pw@127.0.0.1:{sip_port}",
            v["id"].as_str().unwrap()
        ),
        660,
        "opus/48000/2",
        &pw_log,
    );
    eventually(Duration::from_secs(15), "404, 488 and 403", || async {
        (logged(&wrong_log, "closed: 404")
            && logged(&gsm_log, "closed: 488")
            && logged(&pw_log, "closed: 403"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            std::fs::read_to_string(&wrong_log).unwrap_or_default(),
            std::fs::read_to_string(&gsm_log).unwrap_or_default()
                + &std::fs::read_to_string(&pw_log).unwrap_or_default()
        )
    });

    // A room system in Opus (passed through), then a phone in G.711 μ-law (transcoded).
    for (name, codecs, hz) in [
        ("Room 101", "opus/48000/2", 660),
        ("Desk phone", "pcmu", 880),
    ] {
        room_call(
            &host,
            dirs.path(),
            &logs,
            &gateway_log,
            &meeting,
            sip_port,
            name,
            codecs,
            hz,
        )
        .await;
    }
    // The metrics say what happened: two calls answered and set up, 404, 403, 488 (the
    // GSM phone and the flood's offerless INVITEs), the flood's 503s, audio both ways,
    // no call left in progress.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let calls = |code: &str| harness::metric_sum(&text, "fjord_sip_calls_total", &[("code", code)]);
    assert_eq!(
        [calls("200"), calls("404"), calls("403"), calls("503")],
        [2.0, 1.0, 1.0, limited as f64],
        "{text}"
    );
    assert_eq!(calls("488"), (refused + 1) as f64, "{text}");
    assert_eq!(
        harness::metric_value(&text, "fjord_sip_call_setup_seconds_count"),
        Some(2.0)
    );
    for direction in ["from_caller", "to_caller"] {
        assert!(
            harness::metric_sum(
                &text,
                "fjord_sip_rtp_packets_total",
                &[("direction", direction)]
            ) > 100.0,
            "{direction}: {text}"
        );
    }
    assert_eq!(
        harness::metric_sum(&text, "fjord_sip_calls_active", &[]),
        0.0,
        "{text}"
    );
    assert!(text.contains("region=\"oslo\""), "{text}");
}

/// `name` dials the meeting offering `codecs` and speaking at `hz`: the host hears it,
/// it hears the host's 440 Hz, the host mutes it, and the host's removal hangs up on it.
#[allow(clippy::too_many_arguments)]
async fn room_call(
    host: &bot::Bot,
    dirs: &Path,
    logs: &Path,
    gateway_log: &Path,
    meeting: &str,
    sip_port: u16,
    name: &str,
    codecs: &str,
    hz: u32,
) {
    let byes_before = std::fs::read_to_string(gateway_log)
        .unwrap_or_default()
        .matches("the meeting ended the call: BYE")
        .count();
    // Joined under its display name, its tone heard by the host.
    let room_dir: PathBuf = dirs.join(name.replace(' ', "-"));
    let room_log = logs.join(format!("baresip-{}.log", name.replace(' ', "-")));
    let _room = baresip(
        &room_dir,
        name,
        baresip_port(),
        &format!("sip:{meeting}@127.0.0.1:{sip_port}"),
        hz,
        codecs,
        &room_log,
    );
    let room = eventually(
        Duration::from_secs(20),
        "the room system in the meeting",
        || async {
            host.participants_joined()
                .into_iter()
                .find(|p| p.name == name)
                .map(|p| p.participant_id)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(gateway_log).unwrap_or_default()
        )
    });
    let heard = eventually(
        Duration::from_secs(15),
        "the room system's audio at the host",
        || async {
            let r = host.received();
            let counts = r.get(&(room.clone(), "audio"))?;
            (counts.audio.len() >= 100).then(|| counts.audio.clone())
        },
    )
    .await
    .unwrap();
    assert_eq!(bot::media::tone_hz(&heard).unwrap(), hz, "{name}");
    // Let the room system hear the host for a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The host mutes it: its audio stops reaching the meeting (the node drops it).
    host.send(ClientMsg::MuteParticipant {
        participant_id: room.clone(),
        audio: true,
        video: false,
    })
    .unwrap();
    let packets = || {
        host.received()
            .get(&(room.clone(), "audio"))
            .map_or(0, |c| c.packets)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let muted_at = packets();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        packets() <= muted_at + 2,
        "{name}'s audio goes on after the host muted it: {muted_at} -> {}",
        packets()
    );

    // The host removes it: the gateway hangs up (BYE) and the participant is gone.
    host.send(ClientMsg::Remove {
        participant_id: room.clone(),
    })
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "the gateway hangs up on the room system",
        || async {
            let byes = std::fs::read_to_string(gateway_log)
                .unwrap_or_default()
                .matches("the meeting ended the call: BYE")
                .count();
            (byes > byes_before && host.participants_left().contains(&room)).then_some(())
        },
    )
    .await
    .unwrap();

    // What the room system heard: the host's 440 Hz (its recording of the call).
    let recorded = eventually(Duration::from_secs(10), "baresip's recording", || async {
        let wav = std::fs::read_dir(room_dir.join("rec"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))?;
        let (samples, rate) = wav_samples(&wav)?;
        (samples.len() as u32 >= 2 * rate).then_some((samples, rate))
    })
    .await
    .unwrap();
    let (samples, rate) = recorded;
    // Its last two seconds: the host's tone (the first moments may be silence).
    let tail = &samples[samples.len() - 2 * rate as usize..];
    assert_eq!(
        common::tone::dominant_frequency(tail, rate, 100, 4000, 10),
        440
    );
}
