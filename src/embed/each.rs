//! Embedding a set of texts: cut to the model's limit, grouped into calls
//! of its batch size, `concurrency` calls in flight, every call counted and
//! its answer checked. What failed is each text's [`Outcome`], so the
//! vectors that came back are kept.

use std::sync::atomic::Ordering;

use super::{EmbedError, EmbedStats, Embedder, cut, estimated_tokens};

/// Embeds each text once, at most `concurrency` at a time; results are in input order.
/// The caller passes distinct texts: this function does not deduplicate.
/// Any failure fails the whole set; see [`embed_each`] to keep the texts that worked.
pub async fn embed_distinct<E: Embedder>(
    embedder: &E,
    texts: &[&str],
    concurrency: usize,
    stats: &EmbedStats,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    embed_each(embedder, texts, concurrency, stats)
        .await?
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Vector(vector) => Ok(vector),
            Outcome::Refused(reason) => Err(EmbedError::TextRejected(reason)),
            Outcome::Unavailable(e) => Err(e),
        })
        .collect()
}

/// What became of one text in [`embed_each`].
#[derive(Debug)]
pub enum Outcome {
    /// Its vector.
    Vector(Vec<f32>),
    /// The service refused this text ([`EmbedError::TextRejected`]).
    Refused(String),
    /// The service could not answer this time (a transient error).
    Unavailable(EmbedError),
}

/// Embeds every text, whatever happens to the others: a refused text or a
/// call the service could not answer is that text's [`Outcome`], so the
/// vectors that did come back are kept (the caller caches them: a retry
/// then costs only the calls that failed). Only a definite error that is no
/// single text's (a vector of the wrong size, access denied) fails the set.
///
/// Texts are cut to the model's limit ([`cut`]), grouped into calls of
/// [`Embedder::max_batch`], and `concurrency` calls are kept in flight. A
/// call of several texts that the service refuses is tried again text by
/// text, so only the refused one is refused.
pub async fn embed_each<E: Embedder>(
    embedder: &E,
    texts: &[&str],
    concurrency: usize,
    stats: &EmbedStats,
) -> Result<Vec<Outcome>, EmbedError> {
    use futures_util::StreamExt;
    let limit = embedder.max_input_chars();
    let texts: Vec<&str> = texts
        .iter()
        .map(|text| {
            let (sent, was_cut) = cut::cut_to_limit(text, limit);
            if was_cut {
                stats.texts_cut.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    chars = text.chars().count(),
                    limit,
                    "embedding text cut to the model's input limit (embed.max_input_chars)"
                );
            }
            sent
        })
        .collect();
    let mut out = Vec::with_capacity(texts.len());
    // The futures are built eagerly (one per call of a chunk), so no closure
    // has to be generic over the borrow of `embedder`: the caller's future stays `Send`.
    let futures: Vec<_> = texts.chunks(embedder.max_batch().max(1)).map(|group| embed_group(embedder, group, stats)).collect();
    let mut calls = futures_util::stream::iter(futures).buffered(concurrency.max(1));
    while let Some(outcomes) = calls.next().await {
        out.extend(outcomes?);
    }
    Ok(out)
}

/// One call for `texts`, then the search for the refused text when the call was refused.
async fn embed_group<E: Embedder>(embedder: &E, texts: &[&str], stats: &EmbedStats) -> Result<Vec<Outcome>, EmbedError> {
    match call(embedder, texts, stats).await {
        Err(EmbedError::TextRejected(_)) if texts.len() > 1 => {
            let mut out = Vec::with_capacity(texts.len());
            for text in texts {
                out.extend(outcomes(call(embedder, std::slice::from_ref(text), stats).await, 1)?);
            }
            Ok(out)
        }
        result => outcomes(result, texts.len()),
    }
    .map(|outcomes| outcomes.into_iter().map(|outcome| checked(outcome, embedder)).collect())
}

/// A vector that is not finite or points nowhere is never written nor
/// cached: for that text the service did not answer usably this time, so
/// it is retried (and, while streaming, owed) like a call that failed.
fn checked<E: Embedder>(outcome: Outcome, embedder: &E) -> Outcome {
    let Outcome::Vector(vector) = &outcome else { return outcome };
    match super::check_vector(vector, embedder.space().dimensions) {
        Ok(()) => outcome,
        Err(fault) => {
            let model = &embedder.space().model;
            tracing::warn!(%model, %fault, "the embedding service answered a vector that cannot be written; retried later");
            Outcome::Unavailable(EmbedError::Unavailable(format!("{model} answered an unusable vector: {fault}")))
        }
    }
}

/// The outcome of each of the `n` texts of one call.
fn outcomes(result: Result<Vec<Vec<f32>>, EmbedError>, n: usize) -> Result<Vec<Outcome>, EmbedError> {
    match result {
        Ok(vectors) => Ok(vectors.into_iter().map(Outcome::Vector).collect()),
        Err(EmbedError::TextRejected(reason)) => Ok((0..n).map(|_| Outcome::Refused(reason.clone())).collect()),
        Err(EmbedError::Unavailable(reason)) => Ok((0..n).map(|_| Outcome::Unavailable(EmbedError::Unavailable(reason.clone()))).collect()),
        Err(e) => Err(e),
    }
}

/// One call, counted, its answer checked: a vector per text, each of the configured size.
async fn call<E: Embedder>(embedder: &E, texts: &[&str], stats: &EmbedStats) -> Result<Vec<Vec<f32>>, EmbedError> {
    stats.calls.fetch_add(1, Ordering::Relaxed);
    stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
    let answer = embedder.embed_batch(texts).await?;
    if answer.cut > 0 {
        stats.texts_cut.fetch_add(answer.cut, Ordering::Relaxed);
        tracing::warn!(texts = answer.cut, model = %embedder.space().model, "embedding texts cut to the model's input limit in tokens");
    }
    match answer.tokens {
        Some(tokens) => stats.tokens.fetch_add(tokens, Ordering::Relaxed),
        None => stats.tokens_estimated.fetch_add(texts.iter().map(|t| estimated_tokens(t)).sum(), Ordering::Relaxed),
    };
    let model = &embedder.space().model;
    if answer.vectors.len() != texts.len() {
        // A reply that lost or added vectors cannot be matched to texts: the service's hiccup.
        return Err(EmbedError::Unavailable(format!("{model} answered {} vectors for {} texts", answer.vectors.len(), texts.len())));
    }
    let dims = embedder.space().dimensions;
    if let Some(wrong) = answer.vectors.iter().find(|v| v.len() != dims) {
        return Err(EmbedError::BadResponse(format!(
            "model {model} answered {} dimensions where embed.dimensions is {dims}; check embed.dimensions against the model",
            wrong.len()
        )));
    }
    Ok(answer.vectors)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::document::EmbeddingSpace;
    use crate::embed::{Embedded, LocalEmbedder};

    /// Counter access as in the pipeline's stats.
    struct Stats;
    impl Stats {
        fn get(counter: &AtomicU64) -> u64 {
            counter.load(Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn embed_distinct_counts_calls_and_keeps_order() {
        let e = LocalEmbedder::new(16, 1);
        let stats = EmbedStats::default();
        let out = embed_distinct(&e, &["a b", "c d", "e f"], 2, &stats).await.unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1], e.embed("c d").await.unwrap().vector);
        assert_eq!(stats.calls(), 3);
    }

    /// A model taking `batch` texts per call that refuses texts containing
    /// "BAD", answers vectors of the text's length, and reports no tokens.
    struct Batching {
        space: EmbeddingSpace,
        batch: usize,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl Batching {
        fn new(batch: usize) -> Self {
            let space = EmbeddingSpace { model: "fake".into(), dimensions: 2, normalize: false, template_version: 1 };
            Self { space, batch, calls: Default::default() }
        }
    }

    impl Embedder for Batching {
        fn space(&self) -> &EmbeddingSpace {
            &self.space
        }
        fn max_batch(&self) -> usize {
            self.batch
        }
        fn max_input_chars(&self) -> usize {
            20
        }
        async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
            self.calls.lock().unwrap().push(texts.iter().map(|t| t.to_string()).collect());
            assert!(texts.len() <= self.batch, "never more than a call takes");
            if texts.iter().any(|t| t.contains("BAD")) {
                return Err(EmbedError::TextRejected("contains BAD".into()));
            }
            Ok(Embedded { vectors: texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect(), tokens: None, cut: 0 })
        }
    }

    #[tokio::test]
    async fn texts_go_in_calls_of_the_batch_size_in_order() {
        let e = Batching::new(3);
        let stats = EmbedStats::default();
        let texts: Vec<String> = (0..7).map(|i| "x".repeat(i + 1)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = embed_each(&e, &refs, 2, &stats).await.unwrap();
        let sizes: Vec<usize> = e.calls.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        for (i, outcome) in out.iter().enumerate() {
            assert!(matches!(outcome, Outcome::Vector(v) if v[0] == (i + 1) as f32), "{i}: {outcome:?}");
        }
        assert_eq!((stats.calls(), Stats::get(&stats.texts)), (3, 7));
        assert_eq!(Stats::get(&stats.tokens), 0, "the model reports none");
        assert_eq!(Stats::get(&stats.tokens_estimated), (1..=7u64).map(|n| n.div_ceil(4)).sum::<u64>(), "so they are estimated");
    }

    #[tokio::test]
    async fn a_refused_call_is_tried_text_by_text_so_only_the_refused_text_is_refused() {
        let e = Batching::new(4);
        let stats = EmbedStats::default();
        let out = embed_each(&e, &["a", "b", "BAD c", "d", "e"], 1, &stats).await.unwrap();
        let kinds: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Outcome::Vector(_) => "vector",
                Outcome::Refused(_) => "refused",
                Outcome::Unavailable(_) => "unavailable",
            })
            .collect();
        assert_eq!(kinds, ["vector", "vector", "refused", "vector", "vector"]);
        // [a b BAD d] refused, then a, b, BAD, d alone; [e] as it was.
        assert_eq!(stats.calls(), 6);
    }

    #[tokio::test]
    async fn texts_over_the_limit_are_cut_and_counted() {
        let e = Batching::new(2);
        let stats = EmbedStats::default();
        let long = "WORD ".repeat(10);
        embed_each(&e, &[long.as_str(), "short"], 1, &stats).await.unwrap();
        let sent = e.calls.lock().unwrap()[0].clone();
        assert_eq!(sent[0], "WORD WORD WORD WORD", "cut at a word boundary within 20 characters");
        assert_eq!(sent[1], "short");
        assert_eq!(Stats::get(&stats.texts_cut), 1);
    }
}
