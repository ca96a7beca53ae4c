//! The protobuf codec of AuthService: prost's, except that a request that
//! does not decode is the client's bug, not the server's. tonic answers it
//! INTERNAL (as gRPC's status code guide suggests) with nothing logged or
//! counted, so a broken client looked like a server fault. Here it is
//! INVALID_ARGUMENT (reason `INVALID_ARGUMENT`, field `message`), logged at
//! debug and counted in `wxauth_malformed_requests_total{message}`.
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstCodec;

use crate::domain::error::Error;

/// Named by `build.rs` as the codec of the generated service and client.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(PhantomData)
    }
}

/// prost's decoder with its error mapped to a client error.
#[derive(Debug)]
pub struct CheckedDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            // The message's name, e.g. `ExchangeCodeRequest`: a static label
            // chosen by the contract, never by the client.
            let message = std::any::type_name::<U>()
                .rsplit("::")
                .next()
                .unwrap_or("unknown");
            crate::domain::metrics::malformed_request(message);
            // prost's error names a field path and a wire problem, no value.
            tracing::debug!(message, error = %e, "malformed protobuf in a request");
            Error::invalid("message", format!("not a valid {message}")).into()
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
