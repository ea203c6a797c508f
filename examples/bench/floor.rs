//! Redis's own ingest floor and the index's recall.
//!
//! The floor: the documents drugsync loaded, copied into a scratch index of
//! the same definition in MULTI/EXEC chunks of the same size, one chunk at
//! a time as drugsync writes them, timed. Variants change one Redis-side
//! setting (FLOAT16 vectors, another EF_CONSTRUCTION) to show what each
//! would buy, with the recall each gives.
//!
//! Recall@10: for sample documents, the index's KNN top 10 for the
//! document's own vector against the exact top 10 by brute force over every
//! stored vector (cosine, as the index), ties counted as hits (many drugs
//! share a text, so their vectors are equal).

use std::collections::HashMap;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::IndexedRandom;
use redis::Value;

use crate::support::BoxError;

/// Every document hash under a prefix, as Redis holds it.
pub struct Corpus {
    /// Document keys without the prefix.
    pub ids: Vec<String>,
    /// Each document's fields (the vector field included, as bytes).
    pub hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Each document's vector, with its norm.
    pub vectors: Vec<(Vec<f32>, f32)>,
    /// Position in `ids` by id.
    by_id: HashMap<String, usize>,
}

/// Reads every hash under `prefix` (SCAN pages, HGETALL pipelined per page).
pub async fn read_corpus(redis: &mut redis::aio::MultiplexedConnection, prefix: &str, vector_field: &str) -> Result<Corpus, BoxError> {
    let mut corpus = Corpus { ids: Vec::new(), hashes: Vec::new(), vectors: Vec::new(), by_id: HashMap::new() };
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000).query_async(redis).await?;
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HGETALL").arg(key);
        }
        let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(redis).await?;
        for (key, hash) in keys.into_iter().zip(hashes) {
            let Some((_, blob)) = hash.iter().find(|(f, _)| f == vector_field.as_bytes()) else { continue };
            let Some(vector) = drugsync::embed::vector_from_bytes(blob) else { continue };
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            let id = key.trim_start_matches(prefix).to_owned();
            corpus.by_id.insert(id.clone(), corpus.ids.len());
            corpus.ids.push(id);
            corpus.hashes.push(hash);
            corpus.vectors.push((vector, norm));
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(corpus)
}

/// One Redis-side setting changed from the live index's definition.
#[derive(Clone, Copy)]
pub struct Variant {
    pub label: &'static str,
    pub float16: bool,
    pub ef_construction: Option<u32>,
}

/// `FT.CREATE` arguments for `variant` of the live definition over `prefix`.
fn create_args(config: &drugsync::config::Config, name: &str, prefix: &str, variant: Variant) -> Vec<String> {
    let mut args = drugsync::sink::index::IndexSpec::create_args(&drugsync::app::compose::index_definition(config), name, prefix);
    for arg in args.iter_mut() {
        if variant.float16 && arg == "FLOAT32" {
            *arg = "FLOAT16".into();
        }
    }
    if let Some(ef) = variant.ef_construction
        && let Some(at) = args.iter().position(|a| a == "EF_CONSTRUCTION")
    {
        args[at + 1] = ef.to_string();
    }
    args
}

/// Copies `corpus` into a scratch index `name` over `prefix` built as
/// `variant`, `chunk` documents per MULTI/EXEC, one chunk at a time; returns
/// the seconds until every chunk was acknowledged and the index had them all.
pub async fn copy_into(
    redis: &mut redis::aio::MultiplexedConnection,
    config: &drugsync::config::Config,
    name: &str,
    prefix: &str,
    variant: Variant,
    corpus: &Corpus,
    chunk: usize,
) -> Result<f64, BoxError> {
    drop_scratch(redis, name).await;
    let args = create_args(config, name, prefix, variant);
    let _: () = redis::cmd("FT.CREATE").arg(&args).query_async(redis).await?;
    let vector_field = config.index.vector_field.as_bytes();
    let started = Instant::now();
    let order: Vec<usize> = (0..corpus.ids.len()).collect();
    for part in order.chunks(chunk) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &i in part {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(format!("{prefix}{}", corpus.ids[i]));
            for (field, value) in &corpus.hashes[i] {
                cmd.arg(field);
                if variant.float16 && field.as_slice() == vector_field {
                    cmd.arg(to_float16(&corpus.vectors[i].0));
                } else {
                    cmd.arg(value);
                }
            }
            pipe.add_command(cmd).ignore();
        }
        let _: () = pipe.query_async(redis).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let docs = indexed_docs(redis, name).await?;
    if docs != corpus.ids.len() as u64 {
        return Err(format!("scratch index {name} holds {docs} documents of {}", corpus.ids.len()).into());
    }
    Ok(secs)
}

/// `num_docs` of `FT.INFO name`.
async fn indexed_docs(redis: &mut redis::aio::MultiplexedConnection, name: &str) -> Result<u64, BoxError> {
    let info: Vec<Value> = redis::cmd("FT.INFO").arg(name).query_async(redis).await?;
    for pair in info.chunks(2) {
        if let [key, value] = pair
            && redis::from_redis_value::<String>(key.clone()).is_ok_and(|k| k == "num_docs")
        {
            // RediSearch answers a number as a string or a double, depending on the version.
            return Ok(redis::from_redis_value::<String>(value.clone())?.parse::<f64>()? as u64);
        }
    }
    Err("FT.INFO has no num_docs".into())
}

/// Drops a scratch index and its documents (absent is fine).
pub async fn drop_scratch(redis: &mut redis::aio::MultiplexedConnection, name: &str) {
    let _: Result<(), _> = redis::cmd("FT.DROPINDEX").arg(name).arg("DD").query_async(redis).await;
}

/// An index searched for recall: its name, its documents' key prefix, and
/// whether it stores FLOAT16 vectors (queries must match).
pub struct Searched<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub vector_field: &'a str,
    pub float16: bool,
}

/// Mean recall@10 of `index` over `queries` sample documents of `corpus`,
/// at query-time `ef_runtime`.
pub async fn recall_at_10(
    redis: &mut redis::aio::MultiplexedConnection,
    index: &Searched<'_>,
    corpus: &Corpus,
    queries: usize,
    ef_runtime: u32,
) -> Result<f64, BoxError> {
    let Searched { name, prefix, vector_field, float16 } = *index;
    const K: usize = 10;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let all: Vec<usize> = (0..corpus.ids.len()).collect();
    let sample: Vec<usize> = all.choose_multiple(&mut rng, queries.min(all.len())).copied().collect();
    let mut found_total = 0usize;
    for &q in &sample {
        let (query, query_norm) = &corpus.vectors[q];
        let distance = |i: usize| {
            let (v, norm) = &corpus.vectors[i];
            let dot: f32 = query.iter().zip(v).map(|(a, b)| a * b).sum();
            1.0 - dot / (query_norm * norm)
        };
        let mut distances: Vec<f32> = (0..corpus.ids.len()).map(distance).collect();
        let (_, tenth, _) = distances.select_nth_unstable_by(K - 1, f32::total_cmp);
        let tenth = *tenth;
        let blob = if float16 { to_float16(query) } else { drugsync::embed::vector_to_bytes(query) };
        let reply: Vec<Value> = redis::cmd("FT.SEARCH")
            .arg(name)
            .arg(format!("*=>[KNN {K} @{vector_field} $v EF_RUNTIME {ef_runtime} AS knn_score]"))
            .arg("PARAMS")
            .arg(2)
            .arg("v")
            .arg(blob)
            .arg("NOCONTENT")
            .arg("SORTBY")
            .arg("knn_score")
            .arg("LIMIT")
            .arg(0)
            .arg(K)
            .arg("DIALECT")
            .arg(2)
            .query_async(redis)
            .await?;
        for key in reply.iter().skip(1) {
            let key: String = redis::from_redis_value(key.clone())?;
            let Some(&i) = corpus.by_id.get(key.trim_start_matches(prefix)) else { continue };
            // A tie with the 10th exact neighbour is as near as it: a hit.
            if distance(i) <= tenth + 1e-5 {
                found_total += 1;
            }
        }
    }
    Ok(found_total as f64 / (sample.len() * K) as f64)
}

/// IEEE 754 half precision, little-endian, rounded to nearest even.
fn to_float16(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect()
}

fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = bits & 0x7f_ffff;
    if exponent >= 31 {
        return sign | 0x7c00; // too large (or inf/NaN): infinity
    }
    if exponent <= 0 {
        if exponent < -10 {
            return sign; // too small: zero
        }
        // Subnormal: shift the implicit one in, round to nearest even.
        let m = mantissa | 0x80_0000;
        let shift = (14 - exponent) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = mantissa + 0xfff + ((mantissa >> 13) & 1);
    if rounded & 0x80_0000 != 0 {
        // The mantissa carried into the exponent.
        return sign | (((exponent + 1) as u16) << 10);
    }
    sign | ((exponent as u16) << 10) | (rounded >> 13) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn float16_rounds_like_ieee() {
        assert_eq!(super::f32_to_f16(1.0), 0x3c00);
        assert_eq!(super::f32_to_f16(-2.0), 0xc000);
        assert_eq!(super::f32_to_f16(0.5), 0x3800);
        assert_eq!(super::f32_to_f16(65504.0), 0x7bff);
        assert_eq!(super::f32_to_f16(0.0), 0);
    }
}
