//! Domain <-> proto conversions.
use super::pb;
use crate::model::User;

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn user_to_proto(u: User) -> pb::User {
    pb::User {
        user_id: u.user_id,
        app_id: u.app_id,
        openid: u.openid,
        unionid: u.unionid.unwrap_or_default(),
        phone_number: u.phone_number.unwrap_or_default(),
        country_code: u.country_code.unwrap_or_default(),
        created_at: Some(timestamp(u.created_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_milliseconds() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }
}
