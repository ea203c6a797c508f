//! The test-owned expectation of the index for the reference mapping.
//!
//! Written apart from `src/mapping` on purpose: it reads each of the 8 FDB
//! tables with its own plain `SELECT`, joins them in Rust, and formats every
//! field and the embedding text by rules written out here from the domain
//! facts (docs/fdb-domain: one document per active NDC, the default class is
//! the lowest default-flagged ETC_ID, padding cut). A wrong join, filter or
//! value conversion in drugsync's `select_sql`, loader or template therefore
//! shows up as a difference, instead of being computed the same wrong way on
//! both sides. Only the embedding itself comes from the crate: the offline
//! embedder is a deterministic function of the text, and the text is what
//! this module decides.

use std::collections::{BTreeMap, HashMap};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// One expected document of the reference mapping: the hash fields with a
/// value (empty values are not written), and the text to embed.
pub struct OracleDocument {
    pub fields: BTreeMap<String, String>,
    pub text: String,
}

/// The mapping changes tests make, as the oracle understands them: each is
/// written out here from what the changed SQL means, not read from it.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// `mapping.trim_trailing_spaces`: field values lose their padding.
    pub trim: bool,
    /// `CONCAT('<prefix>', g.STR) AS strength` instead of the reference's
    /// `COALESCE(NULLIF(g.STR60, ''), g.STR)`.
    pub strength_prefix: Option<&'static str>,
    /// `CONCAT('<prefix>', l.MFG) AS manufacturer` instead of `l.MFG`.
    pub manufacturer_prefix: Option<&'static str>,
    /// `CAST(CONCAT(n.BN, <bytes>) AS BINARY) AS brand_name`: the bytes as
    /// drugsync must read a binary value (MySQL's latin1, which is cp1252).
    pub brand_suffix: Option<&'static str>,
}

impl Variant {
    /// The reference mapping of `config/drugsync.toml`.
    pub const REFERENCE: Variant = Variant { trim: true, strength_prefix: None, manufacturer_prefix: None, brand_suffix: None };
}

/// One rgcnseq4 row: what a formulation contributes.
struct Formulation {
    hicl: Option<String>,
    gcdf: Option<String>,
    gcrt: Option<String>,
    strength: Option<String>,
    strength60: Option<String>,
}

/// How the servers compare the join columns: FDB's tables are
/// `latin1_swedish_ci`, which ignores case and trailing spaces.
fn join_key(value: &str) -> String {
    value.trim_end_matches(' ').to_uppercase()
}

/// Trailing spaces cut (FDB pads fixed-width text) when the mapping asks;
/// an empty value is no value either way (empty fields are not written).
fn cut(value: Option<&String>, trim: bool) -> Option<String> {
    value.map(|v| if trim { v.trim_end_matches(' ').to_owned() } else { v.clone() }).filter(|v| !v.is_empty())
}

/// The 60-character variant when it has text, else the short one
/// (`COALESCE(NULLIF(long, ''), short)`, where `''` equals any run of
/// spaces: PAD SPACE collations compare without trailing spaces).
fn long_or_short(long: Option<&String>, short: Option<&String>, trim: bool) -> Option<String> {
    let has_text = |v: &&String| !v.trim_end_matches(' ').is_empty();
    match long.filter(has_text) {
        Some(long) => cut(Some(long), trim),
        None => cut(short, trim),
    }
}

/// Every expected document of the schema `conn` is connected to, by NDC,
/// for the reference mapping.
pub async fn expected_documents(conn: &mut Conn) -> BTreeMap<String, OracleDocument> {
    expected_documents_of(conn, Variant::REFERENCE).await
}

/// [`expected_documents`] for a mapping changed as `variant` says.
pub async fn expected_documents_of(conn: &mut Conn, variant: Variant) -> BTreeMap<String, OracleDocument> {
    let trim = variant.trim;
    type Row9 = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let ndcs: Vec<Row9> = conn
        .query("SELECT NDC, LBLRID, CAST(GCN_SEQNO AS CHAR), LN, LN60, BN, INNOV, DEA, CAST(OBSDTEC AS CHAR) FROM rndc14")
        .await
        .unwrap();
    let formulations: HashMap<String, Formulation> = conn
        .query::<(String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>), _>(
            "SELECT CAST(GCN_SEQNO AS CHAR), CAST(HICL_SEQNO AS CHAR), GCDF, GCRT, STR, STR60 FROM rgcnseq4",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|(gcn, hicl, gcdf, gcrt, strength, strength60)| (gcn, Formulation { hicl, gcdf, gcrt, strength, strength60 }))
        .collect();
    let ingredients: HashMap<String, (Option<String>, Option<String>)> = conn
        .query::<(String, Option<String>, Option<String>), _>("SELECT CAST(HICL_SEQNO AS CHAR), GNN, GNN60 FROM rhiclsq1")
        .await
        .unwrap()
        .into_iter()
        .map(|(hicl, gnn, gnn60)| (hicl, (gnn, gnn60)))
        .collect();
    let dose_forms = lookup(conn, "SELECT GCDF, GCDF_DESC FROM rdosed2").await;
    let routes = lookup(conn, "SELECT GCRT, GCRT_DESC FROM rrouted3").await;
    let labelers = lookup(conn, "SELECT LBLRID, MFG FROM rlblrid3").await;
    let class_names: HashMap<u64, Option<String>> =
        conn.query::<(u64, Option<String>), _>("SELECT ETC_ID, ETC_NAME FROM retctbl0").await.unwrap().into_iter().collect();
    // The default class of a formulation: its lowest ETC_ID flagged '1'.
    let mut default_class: HashMap<String, u64> = HashMap::new();
    let links: Vec<(String, u64, Option<String>)> =
        conn.query("SELECT CAST(GCN_SEQNO AS CHAR), ETC_ID, ETC_DEFAULT_USE_IND FROM retcgc0").await.unwrap();
    for (gcn, etc, flag) in links {
        if flag.as_deref().map(join_key).as_deref() == Some("1") {
            let lowest = default_class.entry(gcn).or_insert(etc);
            *lowest = (*lowest).min(etc);
        }
    }

    let mut out = BTreeMap::new();
    for (ndc, lblrid, gcn, ln, ln60, bn, innov, dea, obsolete) in ndcs {
        if obsolete.as_deref() != Some("0000-00-00") {
            continue;
        }
        let formulation = gcn.as_ref().and_then(|g| formulations.get(g));
        let ingredient = formulation.and_then(|f| f.hicl.as_ref()).and_then(|h| ingredients.get(h));
        let by_code = |table: &HashMap<String, Option<String>>, code: Option<&String>| -> Option<String> {
            code.and_then(|c| table.get(&join_key(c))).and_then(|v| cut(v.as_ref(), trim))
        };
        let mut fields: BTreeMap<String, Option<String>> = BTreeMap::new();
        fields.insert("ndc".into(), Some(ndc.clone()));
        fields.insert("drug_name".into(), long_or_short(ln60.as_ref(), ln.as_ref(), trim));
        let brand = match variant.brand_suffix {
            None => cut(bn.as_ref(), trim),
            // CONCAT is NULL when BN is; the suffix ends the value, so no padding is left to cut.
            Some(suffix) => bn.as_ref().and_then(|b| cut(Some(&format!("{b}{suffix}")), trim)),
        };
        fields.insert("brand_name".into(), brand);
        fields.insert("generic_name".into(), ingredient.and_then(|(gnn, gnn60)| long_or_short(gnn60.as_ref(), gnn.as_ref(), trim)));
        fields.insert("gcn_seqno".into(), gcn.clone());
        fields.insert("dosage_form".into(), by_code(&dose_forms, formulation.and_then(|f| f.gcdf.as_ref())));
        fields.insert("route".into(), by_code(&routes, formulation.and_then(|f| f.gcrt.as_ref())));
        let strength = match variant.strength_prefix {
            None => formulation.and_then(|f| long_or_short(f.strength60.as_ref(), f.strength.as_ref(), trim)),
            // CONCAT is NULL when STR is, and keeps STR's padding for the trim to cut.
            Some(prefix) => formulation.and_then(|f| f.strength.as_ref()).and_then(|s| cut(Some(&format!("{prefix}{s}")), trim)),
        };
        fields.insert("strength".into(), strength);
        fields.insert(
            "therapeutic_class".into(),
            gcn.as_ref().and_then(|g| default_class.get(g)).and_then(|etc| class_names.get(etc)).and_then(|name| cut(name.as_ref(), trim)),
        );
        let manufacturer = match variant.manufacturer_prefix {
            None => by_code(&labelers, lblrid.as_ref()),
            Some(prefix) => lblrid
                .as_ref()
                .and_then(|c| labelers.get(&join_key(c)))
                .and_then(|m| m.as_ref())
                .and_then(|m| cut(Some(&format!("{prefix}{m}")), trim)),
        };
        fields.insert("manufacturer".into(), manufacturer);
        // Brand/innovator is INNOV '1'; anything else (NULL included) is generic.
        let innovator = innov.as_deref().map(join_key).as_deref() == Some("1");
        fields.insert("is_generic".into(), Some(if innovator { "false" } else { "true" }.into()));
        fields.insert("is_active".into(), Some("true".into()));
        fields.insert("dea_schedule".into(), cut(dea.as_ref(), trim));

        let part = |name: &str| fields[name].clone().unwrap_or_default();
        let text = format!(
            "{} | {} {} {} {} | {}",
            part("drug_name"),
            part("generic_name"),
            part("strength"),
            part("dosage_form"),
            part("route"),
            part("therapeutic_class")
        );
        // Runs of whitespace are one space, none at either end.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = fields.into_iter().filter_map(|(name, value)| value.map(|v| (name, v))).collect();
        out.insert(ndc, OracleDocument { fields, text });
    }
    out
}

/// A code table (`code -> description`), keyed as the server compares codes.
async fn lookup(conn: &mut Conn, sql: &str) -> HashMap<String, Option<String>> {
    conn.query::<(String, Option<String>), _>(sql).await.unwrap().into_iter().map(|(code, value)| (join_key(&code), value)).collect()
}
