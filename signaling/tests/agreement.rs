//! The protocol's three spellings agree: these types, `docs/signaling.md` (for people)
//! and the page's `controller/web/protocol.js` (the names its dispatcher switches on).
//! Rename a message on one side only and this fails, naming it.
//!
//! `protocol.js` is generated from the types: `FJORD_BLESS=1 cargo test -p signaling`
//! writes it anew.
use std::collections::BTreeSet;
use std::path::PathBuf;

use signaling::{ClientMsg, CloseCode, Role, ServerMsg, variant_names};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn set(names: Vec<String>) -> BTreeSet<String> {
    assert!(!names.is_empty(), "serde named no variants");
    names.into_iter().collect()
}

fn client() -> BTreeSet<String> {
    set(signaling::client_types())
}

fn server() -> BTreeSet<String> {
    set(signaling::server_types())
}

fn close_codes() -> BTreeSet<String> {
    set(variant_names::<CloseCode>(r#""\u0000""#))
}

fn roles() -> BTreeSet<String> {
    set(variant_names::<Role>(r#""\u0000""#))
}

/// The message names in the first column of the tables between the heading `from` and
/// the next heading of the same level (`## `).
fn doc_names(doc: &str, from: &str) -> BTreeSet<String> {
    let start = doc
        .find(from)
        .unwrap_or_else(|| panic!("docs/signaling.md has no heading {from:?}"));
    let rest = &doc[start + from.len()..];
    let section = rest.find("\n## ").map_or(rest, |end| &rest[..end]);
    let mut names = BTreeSet::new();
    for line in section.lines() {
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        // A header or separator row has no backticked names.
        for name in first.split('`').skip(1).step_by(2) {
            names.insert(name.to_owned());
        }
    }
    names
}

fn differences(
    what: &str,
    types: &BTreeSet<String>,
    other: &BTreeSet<String>,
    where_: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in types.difference(other) {
        out.push(format!(
            "{what} `{n}` is in the signaling crate but not in {where_}"
        ));
    }
    for n in other.difference(types) {
        out.push(format!(
            "{what} `{n}` is in {where_} but not in the signaling crate"
        ));
    }
    out
}

#[test]
fn the_docs_name_every_message_the_types_have_and_no_other() {
    let doc = std::fs::read_to_string(repo().join("docs/signaling.md")).unwrap();
    let mut wrong = differences(
        "server message",
        &server(),
        &doc_names(&doc, "\n## Server → client"),
        "docs/signaling.md (Server → client)",
    );
    wrong.extend(differences(
        "client message",
        &client(),
        &doc_names(&doc, "\n## Client → server"),
        "docs/signaling.md (Client → server)",
    ));
    // The codes are listed in the `closed` message's row.
    let closed_row = doc
        .lines()
        .find(|l| l.starts_with("| `closed` |"))
        .unwrap_or_default();
    for code in close_codes() {
        if !closed_row.contains(&format!("`{code}`")) {
            wrong.push(format!(
                "close code `{code}` is not in the `closed` row of docs/signaling.md"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `protocol.js` as the types make it.
fn protocol_js() -> String {
    let object = |name: &str, doc: &str, names: BTreeSet<String>| {
        let mut s = format!("\n// {doc}\nexport const {name} = Object.freeze({{\n");
        for n in names {
            s += &format!("  {}: '{n}',\n", n.replace('-', "_"));
        }
        s + "});\n"
    };
    let mut js = String::from(
        "// The signaling protocol's names, as the `signaling` crate defines them. Generated:\n\
         // `FJORD_BLESS=1 cargo test -p signaling` writes it, and a test fails when the two disagree.\n",
    );
    js += &object("SERVER", "Messages the node sends (`type`).", server());
    js += &object("CLIENT", "Messages a client sends (`type`).", client());
    js += &object(
        "CLOSE",
        "Why a session ended (`closed`'s `code`).",
        close_codes(),
    );
    js += &object("ROLE", "A participant's role.", roles());
    js
}

#[test]
fn the_pages_protocol_module_is_generated_from_the_types() {
    let path = repo().join("controller/web/protocol.js");
    let want = protocol_js();
    if std::env::var_os("FJORD_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "controller/web/protocol.js is not what the signaling crate makes: run \
         `FJORD_BLESS=1 cargo test -p signaling` and commit it (the page must handle any \
         new name).\n--- have\n{have}\n--- want\n{want}"
    );
}

#[test]
fn the_page_handles_every_message_the_node_sends() {
    let web = repo().join("controller/web");
    let mut pages = String::new();
    for entry in std::fs::read_dir(&web).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            // Code, not comments (which may show a handler as an example).
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if !line.trim_start().starts_with("//") {
                    pages += line;
                    pages.push('\n');
                }
            }
        }
    }
    let unhandled: Vec<String> = server()
        .into_iter()
        .filter(|n| !pages.contains(&format!("on(SERVER.{n},")))
        .collect();
    assert!(
        unhandled.is_empty(),
        "controller/web registers no handler (`on(SERVER.name, …)`) for {unhandled:?}"
    );
}

#[test]
fn the_names_are_serdes_own() {
    // A sample of each enum round-trips under the name the lists give.
    assert!(client().contains("raise_hand") && client().contains("board_draw"));
    assert!(server().contains("participant_joined") && server().contains("closed"));
    assert!(roles().contains("co-host"));
    let closed = ServerMsg::Closed {
        code: CloseCode::ClosedHere,
        reason: "x".into(),
    };
    let v: serde_json::Value = serde_json::from_str(&closed.to_json()).unwrap();
    assert_eq!(v["code"], "closed_here");
    assert!(close_codes().contains("closed_here"));
    let m: ClientMsg =
        serde_json::from_str(r#"{"type":"set_role","participant_id":"p","role":"co-host"}"#)
            .unwrap();
    assert_eq!(
        m,
        ClientMsg::SetRole {
            participant_id: "p".into(),
            role: Role::CoHost
        }
    );
}
