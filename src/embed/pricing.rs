//! What embedding costs and how texts are sent, as summaries and metrics
//! report it: one type for the reconcile and replay reports and `/metrics`.

use crate::config::EmbedConfig;

/// The model in use, its input limit and batch size, and its price.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// The model's name in the vector space (`embed.model_id`, or the
    /// offline embedder's name for `local`).
    pub model: String,
    /// Longest text sent, in characters (`embed.max_input_chars` or the model's default).
    pub input_char_limit: usize,
    /// Texts per call (`embed.batch_size` or the model's default).
    pub texts_per_call: usize,
    /// USD per 1,000 input tokens (`embed.price_per_1k_tokens` or the model's list price).
    pub price_per_1k_tokens: f64,
}

impl Pricing {
    /// The configured limits and price of `model`.
    pub fn of(embed: &EmbedConfig, model: &str) -> Self {
        Self {
            model: model.to_owned(),
            input_char_limit: embed.input_char_limit(),
            texts_per_call: embed.texts_per_call(),
            price_per_1k_tokens: embed.price_per_1k(),
        }
    }

    /// What `tokens` input tokens cost, in USD.
    pub fn cost_usd(&self, tokens: u64) -> f64 {
        tokens as f64 / 1000.0 * self.price_per_1k_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_priced_per_thousand() {
        let pricing = Pricing { model: "m".into(), input_char_limit: 1, texts_per_call: 1, price_per_1k_tokens: 0.02 };
        assert!((pricing.cost_usd(250_000) - 5.0).abs() < 1e-9);
        assert_eq!(pricing.cost_usd(0), 0.0);
    }
}
