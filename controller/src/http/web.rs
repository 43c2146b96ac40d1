//! The browser client: the meeting page and the static files of it and of the portal,
//! self-contained and compiled in (no CDN, no build step). Served beside the JSON API,
//! which they call.
use std::borrow::Cow;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../../web/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// A file of `controller/web/`, compiled in: its name, its content type, its text.
macro_rules! web_file {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            $content_type,
            include_str!(concat!("../../web/", $name)),
        )
    };
}

/// Every static file, served at `/static/{name}`. The meeting page is ES modules that
/// import each other by these names, so a module missing here stops the whole page: a
/// new module gets its line here.
const STATIC: &[(&str, &str, &str)] = &[
    web_file!("style.css", CSS),
    web_file!("protocol.js", JS),
    web_file!("app.js", JS),
    web_file!("board.js", JS),
    web_file!("chat.js", JS),
    web_file!("cloud.js", JS),
    web_file!("dom.js", JS),
    web_file!("e2ee.js", JS),
    web_file!("grid.js", JS),
    web_file!("hosts.js", JS),
    web_file!("join.js", JS),
    web_file!("media.js", JS),
    web_file!("polls.js", JS),
    web_file!("recording.js", JS),
    web_file!("session.js", JS),
    web_file!("signal.js", JS),
    web_file!("state.js", JS),
    web_file!("portal.js", JS),
    web_file!("i18n.js", JS),
    web_file!("i18n-en.json", JSON),
    web_file!("i18n-nb.json", JSON),
];

/// The language of ours the reader prefers most by their `Accept-Language` (RFC 9110
/// §12.5.4): Norwegian (`nb`, `no`, `nn`, with or without a region) is bokmål; none of
/// ours, or garbage, is English.
pub fn preferred_language(headers: &HeaderMap) -> &'static str {
    let Some(value) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return "en";
    };
    let mut best: Option<(f32, &'static str)> = None;
    for item in value.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q));
        let primary = tag.split('-').next().unwrap_or_default();
        let ours = match primary {
            "nb" | "no" | "nn" => "nb",
            "en" => "en",
            _ => continue,
        };
        if let Some(q) = q
            && q > 0.0
            && best.is_none_or(|(b, _)| q > b)
        {
            best = Some((q, ours));
        }
    }
    best.map_or("en", |(_, l)| l)
}

/// `html` (whose root says `<html lang="en">`) in the reader's language: the page's
/// script loads that language's catalogue.
pub fn localised(html: &'static str, headers: &HeaderMap) -> Html<Cow<'static, str>> {
    Html(match preferred_language(headers) {
        "en" => Cow::Borrowed(html),
        l => Cow::Owned(html.replacen("<html lang=\"en\">", &format!("<html lang=\"{l}\">"), 1)),
    })
}

async fn page(headers: HeaderMap) -> Html<Cow<'static, str>> {
    localised(INDEX_HTML, &headers)
}

async fn static_file(Path(name): Path<String>) -> Response {
    match STATIC.iter().find(|f| f.0 == name) {
        Some(&(_, content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => {
            let name = crate::lengths::truncate(&name, 80);
            ApiError::NotFound(format!("no static file {name}")).into_response()
        }
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/m/{id}", get(page))
        .route("/static/{name}", get(static_file))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The languages the pages speak: each has its catalogue, `i18n-{code}.json`.
    const LANGUAGES: [&str; 2] = ["en", "nb"];

    #[test]
    fn the_readers_language_comes_from_accept_language_and_garbage_is_english() {
        let lang = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT_LANGUAGE,
                axum::http::HeaderValue::from_bytes(v).unwrap(),
            );
            preferred_language(&h)
        };
        assert_eq!(preferred_language(&HeaderMap::new()), "en");
        assert_eq!(lang(b"nb"), "nb");
        assert_eq!(
            lang(b"nb-NO,nb;q=0.9,no;q=0.8,nn;q=0.7,en-US;q=0.6,en;q=0.5"),
            "nb"
        );
        assert_eq!(lang(b"nn-NO"), "nb");
        assert_eq!(lang(b"en-US,en;q=0.9,nb;q=0.8"), "en");
        assert_eq!(lang(b"de-DE,de;q=0.9,no;q=0.5"), "nb");
        assert_eq!(lang(b"sv, da;q=0.8"), "en");
        assert_eq!(lang(b"nb;q=0, en;q=0.1"), "en", "q=0 means not this one");
        for garbage in [&b";;;,,,q=,"[..], b"nb;q=abc", b"\xff\xfe", b"*", b"nb;q=2"] {
            assert_eq!(lang(garbage), "en", "{garbage:?}");
        }
        let html = "<!doctype html><html lang=\"en\"><p>x</p></html>";
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, "nb".parse().unwrap());
        assert!(localised(html, &h).0.contains("<html lang=\"nb\">"));
    }

    /// The keys a web file uses: `t('…')`, `tn('…'` (its `.one` and `.other`) and
    /// `data-i18n…="…"`.
    fn keys_used(text: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for (call, plural) in [("t('", false), ("tn('", true)] {
            for (at, _) in text.match_indices(call) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let rest = &text[at + call.len()..];
                let key = &rest[..rest.find('\'').expect("a closing quote")];
                if plural {
                    keys.insert(format!("{key}.one"));
                    keys.insert(format!("{key}.other"));
                } else {
                    keys.insert(key.to_owned());
                }
            }
        }
        for (at, _) in text.match_indices("data-i18n") {
            let rest = &text[at..];
            let Some(eq) = rest.find("=\"") else { continue };
            let name = &rest[..eq];
            if name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '1' || c == '8')
            {
                let value = &rest[eq + 2..];
                keys.insert(value[..value.find('"').unwrap()].to_owned());
            }
        }
        keys
    }

    fn placeholders(s: &str) -> BTreeSet<&str> {
        s.split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name))
            .filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .collect()
    }

    #[test]
    fn every_string_the_pages_use_is_in_each_languages_catalogue_and_no_catalogue_has_a_key_the_other_lacks()
     {
        let catalogue = |code: &str| -> BTreeMap<String, String> {
            let (_, _, text) = STATIC
                .iter()
                .find(|f| f.0 == format!("i18n-{code}.json"))
                .unwrap_or_else(|| panic!("no catalogue for {code}"));
            serde_json::from_str(text).unwrap_or_else(|e| panic!("i18n-{code}.json: {e}"))
        };
        let mut used = keys_used(INDEX_HTML);
        used.extend(keys_used(super::super::portal::PORTAL_HTML));
        for (name, _, text) in STATIC {
            if name.ends_with(".js") && *name != "i18n.js" {
                used.extend(keys_used(text));
            }
        }
        assert!(
            used.len() > 100,
            "only {} keys found: is the scan right?",
            used.len()
        );
        let en = catalogue("en");
        for code in LANGUAGES {
            let c = catalogue(code);
            let missing: Vec<&String> = used.iter().filter(|k| !c.contains_key(*k)).collect();
            assert!(
                missing.is_empty(),
                "used but not in i18n-{code}.json: {missing:?}"
            );
            let unused: Vec<&String> = c.keys().filter(|k| !used.contains(*k)).collect();
            assert!(
                unused.is_empty(),
                "in i18n-{code}.json but used nowhere: {unused:?}"
            );
            let not_in_en: Vec<&String> = c.keys().filter(|k| !en.contains_key(*k)).collect();
            assert!(
                not_in_en.is_empty(),
                "in {code} but not in en: {not_in_en:?}"
            );
            for (k, v) in &c {
                assert!(!v.trim().is_empty(), "{code}: {k} is empty");
                assert_eq!(
                    placeholders(v),
                    placeholders(&en[k]),
                    "{code}: {k} has other placeholders than in English"
                );
            }
        }
    }
}
