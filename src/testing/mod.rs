//! Test support, kept out of the shipped code paths: the in-memory fakes of
//! the sink, the checkpoint and the embedder with their fault points
//! (`fakes`, unit tests only), the sink's contract as an executable check
//! run on both the fake and the real Redis (`conformance`, also for the
//! integration tests: built with the `fixture` feature) and a private CA
//! for the TLS tests (`test_pki`, unit tests only). The binlog kit that
//! builds events for the decoder's tests stays beside the decoder
//! (`cdc::decode::testkit`), whose private types it uses.

pub mod conformance;
#[cfg(test)]
pub mod fakes;
#[cfg(test)]
pub mod test_pki;
