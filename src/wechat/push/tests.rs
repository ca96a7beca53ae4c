use super::*;
use crate::domain::crypto::push::{encrypt, signature};
use crate::domain::privacy::revoke;

const TOKEN: &str = "AAAAA";
const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const V3_APP: &str = "wxba5fad812f8e6fb9";
const V3_QUERY: &str = "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3";
const V3_BODY: &str = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="}"#;
const NOW: i64 = 1714112445;

fn key() -> PushKey {
    PushKey::from_encoding_aes_key(ZERO_KEY).unwrap()
}

fn window(now_secs: i64) -> Window {
    Window {
        now_secs,
        max_age_secs: 300,
    }
}

fn open_as(app_id: &str, query: &str, body: &str, now: i64) -> Result<Verified, Refusal> {
    let key = key();
    let app = PushApp {
        app_id,
        token: TOKEN,
        key: &key,
    };
    open(
        &PushQuery::parse(query)?,
        None,
        body.as_bytes(),
        &app,
        window(now),
    )
}

/// A push of `message` as WeChat builds it: the query and the body.
fn sealed(message: &str, app_id: &str, format: Format, ts: i64) -> (String, String) {
    let encrypted = encrypt(&key(), b"0123456789abcdef", message.as_bytes(), app_id);
    let ts = ts.to_string();
    let sig = signature(&[TOKEN, &ts, "42"]);
    let msg_sig = signature(&[TOKEN, &ts, "42", &encrypted]);
    let query = format!("signature={sig}&timestamp={ts}&nonce=42&encrypt_type=aes&msg_signature={msg_sig}");
    let body = match format {
        Format::Json => serde_json::json!({ "ToUserName": "gh_1", "Encrypt": encrypted }).to_string(),
        Format::Xml => format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        ),
    };
    (query, body)
}

const REVOKE_XML: &str =
    "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[platform]]></FromUserName>\
    <CreateTime>1714112440</CreateTime><MsgType><![CDATA[event]]></MsgType>\
    <Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[o-user]]></OpenID>\
    <AppID><![CDATA[wxba5fad812f8e6fb9]]></AppID><RevokeInfo><![CDATA[6|8]]></RevokeInfo></xml>";

#[test]
fn the_official_safe_mode_vector_opens_to_an_event_that_is_not_a_privacy_event() {
    let verified = open_as(V3_APP, V3_QUERY, V3_BODY, NOW).unwrap();
    assert_eq!(verified.mode, Mode::Safe);
    assert_eq!(verified.format, Format::Json);
    assert_eq!(verified.event.kind, PrivacyKind::Other("event:debug_demo".into()));
    assert_eq!(verified.event.create_time, Some(1714112445));
}

#[test]
fn the_official_vector_is_refused_for_another_app_out_of_its_window_or_tampered() {
    assert_eq!(open_as("wxother", V3_QUERY, V3_BODY, NOW), Err(Refusal::WrongApp));
    assert_eq!(open_as(V3_APP, V3_QUERY, V3_BODY, NOW + 301), Err(Refusal::Stale));
    assert_eq!(open_as(V3_APP, V3_QUERY, V3_BODY, NOW - 301), Err(Refusal::Stale));
    assert!(open_as(V3_APP, V3_QUERY, V3_BODY, NOW + 300).is_ok());
    let tampered = V3_BODY.replace("+qdx", "+qdy");
    assert_eq!(
        open_as(V3_APP, V3_QUERY, &tampered, NOW),
        Err(Refusal::BadSignature)
    );
    let other_nonce = V3_QUERY.replace("nonce=415670741", "nonce=415670742");
    assert_eq!(
        open_as(V3_APP, &other_nonce, V3_BODY, NOW),
        Err(Refusal::BadSignature)
    );
    let unsigned = V3_QUERY.replace("&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3", "");
    assert_eq!(
        open_as(V3_APP, &unsigned, V3_BODY, NOW),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn a_revoke_event_opens_from_safe_and_compatible_bodies_in_json_and_xml() {
    let json = serde_json::json!({
        "ToUserName": "gh_1", "FromUserName": "platform", "CreateTime": 1714112440,
        "MsgType": "event", "Event": "user_authorization_revoke", "OpenID": "o-user",
        "AppID": V3_APP, "RevokeInfo": "6|8"
    })
    .to_string();
    for (message, format) in [(json.as_str(), Format::Json), (REVOKE_XML, Format::Xml)] {
        let (query, body) = sealed(message, V3_APP, format, NOW);
        let safe = open_as(V3_APP, &query, &body, NOW).unwrap();
        assert_eq!((safe.mode, safe.format), (Mode::Safe, format));
        let expected = PrivacyEvent {
            openid: Some("o-user".into()),
            kind: PrivacyKind::AuthorizationRevoked(vec![revoke::NICKNAME_AND_AVATAR, revoke::PHONE]),
            create_time: Some(1714112440),
        };
        assert_eq!(safe.event, expected);
        // Compatible: the plaintext copy too, which is ignored.
        let compatible = match format {
            Format::Json => body.replace('{', r#"{"MsgType":"event","OpenID":"o-forged","#),
            Format::Xml => body.replace("<xml>", "<xml><OpenID>o-forged</OpenID>"),
        };
        let verified = open_as(V3_APP, &query, &compatible, NOW).unwrap();
        assert_eq!(verified.mode, Mode::Compatible);
        assert_eq!(verified.event, expected);
    }
}

#[test]
fn plaintext_mode_is_refused_even_when_signed() {
    let body = r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#;
    let v2 = "signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656";
    assert_eq!(open_as(V3_APP, v2, body, 1714037059), Err(Refusal::Plaintext));
    let forged = v2.replace("899c", "899d");
    assert_eq!(
        open_as(V3_APP, &forged, body, 1714037059),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn the_url_check_answers_echostr_only_with_the_tokens_signature() {
    let v1 = "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492";
    let query = PushQuery::parse(v1).unwrap();
    assert_eq!(verify_url(&query, TOKEN), Ok("4375120948345356249"));
    assert_eq!(verify_url(&query, "BBBBB"), Err(Refusal::BadSignature));
    let no_echo = PushQuery::parse(&v1.replace("echostr=4375120948345356249&", "")).unwrap();
    assert!(matches!(verify_url(&no_echo, TOKEN), Err(Refusal::Malformed(_))));
}

#[test]
fn queries_with_missing_repeated_or_oversized_parameters_are_refused() {
    let sig = "signature=f464b24fc39322e44b38aa78f5edd27bd1441696";
    assert!(PushQuery::parse(&format!("{sig}&timestamp=1&nonce=2")).is_ok());
    assert_eq!(
        PushQuery::parse("timestamp=1&nonce=2"),
        Err(Refusal::BadSignature)
    );
    assert!(PushQuery::parse(&format!("{sig}&timestamp=1&nonce=2&nonce=3")).is_err());
    assert!(PushQuery::parse(&format!("{sig}&timestamp=-1&nonce=2")).is_err());
    assert!(PushQuery::parse(&format!("{sig}&timestamp=1&nonce=")).is_err());
    assert!(PushQuery::parse(&format!("{sig}&timestamp=1&nonce=2&x={}", "a".repeat(MAX_QUERY))).is_err());
    assert!(PushQuery::parse(&format!("{sig}&timestamp=1&nonce=2&msg_signature=zz")).is_err());
}

#[test]
fn the_other_events_and_odd_fields_parse_leniently() {
    let fields = |pairs: &[(&str, &str)]| -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let base = [("MsgType", "Event"), ("OpenID", "o1"), ("CreateTime", "7")];
    let with = |e: &str| {
        let mut f = fields(&base);
        f.insert("Event".into(), e.into());
        event(&f)
    };
    assert_eq!(with("user_info_modified").kind, PrivacyKind::UserInfoModified);
    assert_eq!(
        with("user_authorization_cancellation").kind,
        PrivacyKind::AccountCancelled
    );
    assert_eq!(
        with("wxa_<script>").kind,
        PrivacyKind::Other("event:wxa_script".into())
    );
    assert_eq!(
        with("user_authorization_revoke").kind,
        PrivacyKind::AuthorizationRevoked(vec![])
    );
    let text = event(&fields(&[("MsgType", "text"), ("Event", "user_info_modified")]));
    assert_eq!(text.kind, PrivacyKind::Other("msgtype:text".into()));
    let no_openid = event(&fields(&[("MsgType", "event"), ("Event", "user_info_modified")]));
    assert_eq!((no_openid.openid, no_openid.create_time), (None, None));
    assert_eq!(revoke_info("6|8, 19;20 x 99999999999"), vec![6, 8, 19, 20]);
    assert_eq!(revoke_info(""), Vec::<u32>::new());
}
