//! Criterion benchmarks of the pure pieces on wxauth's hot paths: what a
//! VerifyToken costs before any I/O (token parsing and MAC check, a cache
//! hit), what a login adds (code hashing, sealing the session_key), and the
//! WeChat crypto of phone binding and user info (AES-128-CBC, signatures).
//!
//! `cargo bench --bench hot_paths`; see BENCHMARKS.md for figures.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use wxauth::domain::crypto::{
    aes_cbc_decrypt, aes_cbc_encrypt, constant_time_eq, decode_wechat_base64, session_key_bytes,
    session_signature, user_info_signature, ServerKeys, SessionId, Slot,
};
use wxauth::domain::model::{Session, User};
use wxauth::session::cache::TokenCache;
use wxauth::wechat::payload::{self, PhonePayload};

// Official vector V1 of the WeChat reference: a real getPhoneNumber-style
// payload (userinfo, 393 bytes) and its session_key.
const V1_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const V1_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";

fn keys() -> ServerKeys {
    ServerKeys::derive(b"benchmark server key, 32 bytes!!")
}

fn tokens(c: &mut Criterion) {
    let keys = keys();
    let id = SessionId::random();
    let token = keys.mint_token(id);
    let token = token.expose().clone();
    let mut forged = token.clone().into_bytes();
    forged[10] ^= 1;
    let forged = String::from_utf8(forged).unwrap();

    let mut g = c.benchmark_group("token");
    g.bench_function("mint", |b| b.iter(|| keys.mint_token(black_box(id))));
    g.bench_function("parse_valid", |b| b.iter(|| keys.parse_token(black_box(&token))));
    g.bench_function("parse_forged", |b| {
        b.iter(|| keys.parse_token(black_box(&forged)))
    });
    g.bench_function("parse_junk_length", |b| {
        b.iter(|| keys.parse_token(black_box("wxa1_short")))
    });
    g.bench_function("code_hash", |b| {
        b.iter(|| {
            keys.code_hash(
                "login",
                black_box("wxsimulator0000000"),
                black_box("0a3Xqv000dKzLQ1v6Y200sxJ1d4Xqv0B"),
            )
        })
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let cache = TokenCache::new(100_000, Duration::from_secs(600));
    cache.no_other_writers();
    let mut ids = Vec::new();
    for i in 0..10_000 {
        let user_id = format!("usr_{i:024x}");
        let session = Session {
            id: SessionId::random(),
            user_id: user_id.clone(),
            app_id: "wxsimulator0000000".into(),
            created_at: 0,
            last_seen_at: 0,
            expires_at: i64::MAX,
            revoked_at: None,
        };
        let user = User {
            user_id,
            app_id: "wxsimulator0000000".into(),
            openid: format!("o{i:027x}"),
            unionid: None,
            phone_number: Some("13580006666".into()),
            country_code: Some("86".into()),
            created_at: 0,
            nickname: None,
            avatar_url: None,
        };
        ids.push(session.id);
        cache.insert(cache.ticket(), session, user);
    }
    let mut i = 0;
    c.bench_function("token_cache/hit", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            cache.get(black_box(&ids[i]))
        })
    });
    let missing = SessionId::random();
    c.bench_function("token_cache/miss", |b| b.iter(|| cache.get(black_box(&missing))));
}

fn wechat_crypto(c: &mut Criterion) {
    let key = session_key_bytes(V1_KEY).unwrap();
    let iv: [u8; 16] = decode_wechat_base64(V1_IV).unwrap().try_into().unwrap();
    let phone = br#"{"phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"86","watermark":{"appid":"wx4f4bc4dec97d474b","timestamp":1477314187}}"#;
    let data = aes_cbc_encrypt(&key, &iv, phone);
    let data_b64 = base64_encode(&data);

    let mut g = c.benchmark_group("wechat");
    g.bench_function("aes_cbc_decrypt_phone", |b| {
        b.iter(|| aes_cbc_decrypt(&key, &iv, black_box(&data)))
    });
    g.bench_function("decrypt_wrong_key", |b| {
        let wrong = [7u8; 16];
        b.iter(|| aes_cbc_decrypt(&wrong, &iv, black_box(&data)))
    });
    g.bench_function("open_phone_payload_from_base64", |b| {
        b.iter(|| {
            let data = decode_wechat_base64(black_box(&data_b64)).unwrap();
            payload::open::<PhonePayload>(V1_KEY, &iv, &data, "wx4f4bc4dec97d474b")
        })
    });
    let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
    let expected = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";
    g.bench_function("user_info_signature_check", |b| {
        b.iter(|| {
            constant_time_eq(
                &user_info_signature(black_box(raw), "HyVFkGl5F5OQWJZZaNzBBg=="),
                expected,
            )
        })
    });
    g.bench_function("checksession_signature", |b| {
        b.iter(|| session_signature(black_box(V1_KEY)))
    });
    g.finish();
}

fn sealing(c: &mut Criterion) {
    let keys = keys();
    let slot = Slot::UserSessionKey {
        app_id: "wxsimulator0000000",
        openid: "oAbCdEfGhIjKlMnOpQrStUvWxYz0",
    };
    let sealed = keys.seal(slot, V1_KEY);
    let mut g = c.benchmark_group("at_rest");
    g.bench_function("seal_session_key", |b| {
        b.iter(|| keys.seal(slot, black_box(V1_KEY)))
    });
    g.bench_function("open_session_key", |b| {
        b.iter(|| keys.open(slot, black_box(&sealed)))
    });
    g.finish();
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

criterion_group!(benches, tokens, cache, wechat_crypto, sealing);
criterion_main!(benches);
