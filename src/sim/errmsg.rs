//! WeChat's errmsg texts.

/// WeChat's errmsg for an errcode, with the trace suffix real answers carry.
pub fn errmsg(errcode: i64) -> String {
    let text = match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        43002 => "require POST method",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        47001 => "data format error",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        _ => "error",
    };
    let r: [u32; 3] = rand::random();
    format!("{text}, rid: {:08x}-{:08x}-{:08x}", r[0], r[1], r[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errmsg_carries_a_trace_suffix() {
        assert!(errmsg(40029).starts_with("invalid code, rid: "));
        assert!(errmsg(87009).starts_with("invalid signature, rid: "));
    }
}
