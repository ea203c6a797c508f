//! Crossing the row images of one rows event, decoding only the routing column.
//!
//! A rows event body is a sequence of rows; each row is a before image
//! (UPDATE, DELETE), an after image (INSERT, UPDATE), or both. An image is a
//! NULL bitmap over the columns present in it, then the non-NULL values in
//! column order. Widths come from the [`TableLayout`], so every other value is
//! stepped over without being read.

use std::io;

use bitvec::slice::BitSlice;
use mysql_common::binlog::events::RowsEventData;

use super::layout::TableLayout;

/// Which columns one image holds.
#[derive(Debug, Clone)]
struct ImageShape {
    /// Entry `i`: column `i` is in the image.
    present: Vec<bool>,
    /// How many are (sizes the NULL bitmap).
    present_count: usize,
    /// After image of a partial JSON update: starts with value options.
    shared: bool,
}

impl ImageShape {
    fn of(bits: &BitSlice<u8>, columns: usize, shared: bool) -> Self {
        let present: Vec<bool> = bits.iter().by_vals().take(columns).collect();
        let present_count = present.iter().filter(|p| **p).count();
        Self { present, present_count, shared }
    }

    fn has(&self, column: usize) -> bool {
        self.present.get(column).copied().unwrap_or(false)
    }
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Calls `each` with the routing value of every image in `rows` (`None`
/// where the value is NULL). Returns the number of rows.
///
/// Errs on a malformed body, and when an image lacks the routing column
/// (`binlog_row_image` other than FULL): the change's old or new owner would
/// otherwise be lost without a word.
pub fn route_values(layout: &TableLayout, rows: &RowsEventData<'_>, mut each: impl FnMut(Option<String>)) -> io::Result<u64> {
    let data = rows.rows_data();
    let columns = rows.num_columns() as usize;
    if columns != layout.columns.len() {
        return Err(invalid(format!("rows event for `{}` has {columns} columns, its table map {}", layout.table, layout.columns.len())));
    }
    let shared_after = matches!(rows, RowsEventData::PartialUpdateRowsEvent(_));
    let images: Vec<ImageShape> = rows
        .columns_before_image()
        .map(|b| ImageShape::of(b, columns, false))
        .into_iter()
        .chain(rows.columns_after_image().map(|a| ImageShape::of(a, columns, shared_after)))
        .collect();
    for image in &images {
        if !image.has(layout.route) {
            return Err(invalid(format!(
                "row images of `{}` lack the routing column: set binlog_row_image=FULL on the source",
                layout.table
            )));
        }
    }
    let mut at = 0usize;
    let mut count = 0u64;
    while at < data.len() {
        for image in &images {
            each(read_image(layout, image, data, &mut at)?);
        }
        count += 1;
    }
    Ok(count)
}

/// Steps over one image starting at `data[*at]`, returning the routing value.
fn read_image(layout: &TableLayout, image: &ImageShape, data: &[u8], at: &mut usize) -> io::Result<Option<String>> {
    if image.shared {
        let options = super::read_lenenc(data, at).ok_or_else(|| invalid("row image ends in value options"))?;
        if options & 1 != 0 {
            *at += layout.json_columns.div_ceil(8);
        }
    }
    let nulls_len = image.present_count.div_ceil(8);
    let nulls = data.get(*at..*at + nulls_len).ok_or_else(|| invalid("row image ends in its NULL bitmap"))?;
    *at += nulls_len;
    let mut route = None;
    let mut index_in_image = 0usize;
    for (i, column) in layout.columns.iter().enumerate() {
        if !image.has(i) {
            continue;
        }
        let is_null = bit(nulls, index_in_image);
        index_in_image += 1;
        if is_null {
            continue;
        }
        let rest = data.get(*at..).unwrap_or_default();
        let len = column.width.len_at(rest)?;
        let value = rest.get(..len).ok_or_else(|| invalid("row image ends inside a value"))?;
        if i == layout.route {
            route = Some(layout.route_value(value)?);
        }
        *at += len;
    }
    Ok(route)
}
