//! Reading the store: searches newest first, lines after a sequence number (sinks, live
//! tails), histograms; each visits only the partitions whose time range can match.

use std::ops::Bound;
use tantivy::collector::{Count, HistogramCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};

use tantivy::{DocAddress, Order, Term};

use capstan_model::LogLine;

use super::{Error, Store};
use crate::query::LogQuery;

/// Where a page of lines starts, by the lines' sequence numbers (their stable positions in the
/// store: a later line always has a higher one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cursor {
    /// The newest lines, newest first.
    #[default]
    Newest,
    /// The lines before this sequence number, newest first.
    Before(u64),
    /// The lines after this sequence number, oldest first.
    After(u64),
}

/// Which lines a page may hold besides its query: a time range (ns, inclusive) and a last
/// sequence number (an export stops at the lines stored when it began).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub upto: Option<u64>,
}

impl Store {
    /// Lines matching `query` between `since` and `until` (ns, inclusive), newest first, up to
    /// `limit`; and how many matched in all.
    ///
    /// # Errors
    /// A failed search.
    pub fn search(
        &self,
        query: &LogQuery,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<LogLine>, u64), Error> {
        let span = Span {
            since,
            until,
            upto: None,
        };
        let total = self.count(query, span)?;
        let lines = self.page(query, span, Cursor::Newest, limit)?;
        Ok((lines, total))
    }

    /// How many lines match `query` within `span`.
    ///
    /// # Errors
    /// A failed search.
    pub fn count(&self, query: &LogQuery, span: Span) -> Result<u64, Error> {
        let (q, searchers) = self.prepare(query, span, (Bound::Unbounded, Bound::Unbounded));
        let mut total = 0;
        for searcher in searchers {
            // a term query is counted from its document frequency
            total += searcher.search(&*q, &Count).map_err(|e| self.err(e))? as u64;
        }
        Ok(total)
    }

    /// Up to `limit` lines matching `query` within `span`, from `cursor` on: newest first,
    /// or oldest first after [`Cursor::After`]. A page costs about the segments it reads from,
    /// not the store: paging through any number of lines takes constant memory.
    ///
    /// # Errors
    /// A failed search.
    pub fn page(
        &self,
        query: &LogQuery,
        span: Span,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Vec<LogLine>, Error> {
        let upto = span.upto.map_or(Bound::Unbounded, Bound::Included);
        let (seqs, order) = match cursor {
            Cursor::Newest => ((Bound::Unbounded, upto), Order::Desc),
            Cursor::Before(before) => ((Bound::Unbounded, Bound::Excluded(before)), Order::Desc),
            Cursor::After(after) => ((Bound::Excluded(after), upto), Order::Asc),
        };
        // a before cursor past the export's end is bounded by it too
        let seqs = match (cursor, span.upto) {
            (Cursor::Before(before), Some(upto)) if upto < before => {
                (seqs.0, Bound::Included(upto))
            }
            _ => seqs,
        };
        let (q, mut searchers) = self.prepare(query, span, seqs);
        if order == Order::Desc {
            searchers.reverse();
        }
        let mut out = Vec::new();
        for searcher in searchers {
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            for addr in first_by_seq(&searcher, &*q, want, order, seqs).map_err(|e| self.err(e))? {
                out.push(self.line(&searcher, addr)?);
            }
        }
        out.truncate(limit);
        Ok(self.with_origins(out))
    }

    /// Lines with a sequence number after `after`, oldest first, up to `limit` (for sinks and
    /// live tails).
    ///
    /// # Errors
    /// A failed search.
    pub fn after(&self, after: u64, query: &LogQuery, limit: usize) -> Result<Vec<LogLine>, Error> {
        self.page(query, Span::default(), Cursor::After(after), limit)
    }

    /// The query as tantivy runs it (with the time range and `seqs`), and a searcher for each
    /// partition that can hold a match, oldest first (partitions hold ascending sequence
    /// numbers). Taken under the lock, searched without it: a long
    /// search never holds up the commits ingestion needs.
    fn prepare(
        &self,
        query: &LogQuery,
        span: Span,
        seqs: (Bound<u64>, Bound<u64>),
    ) -> (Box<dyn Query>, Vec<tantivy::Searcher>) {
        let inner = self.lock();
        let mut q = self.with_time(&*self.tantivy_query(&inner, query), span.since, span.until);
        if seqs != (Bound::Unbounded, Bound::Unbounded) {
            let term = |b: Bound<u64>| b.map(|v| Term::from_field_u64(self.f.seq, v));
            q = Box::new(BooleanQuery::new(vec![
                (Occur::Must, q),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(term(seqs.0), term(seqs.1))),
                ),
            ]));
        }
        let searchers = inner
            .partitions
            .iter()
            .filter(|p| {
                let m = &p.meta;
                m.lines > 0
                    && span.since.is_none_or(|s| m.max_time >= s)
                    && span.until.is_none_or(|u| m.min_time <= u)
                    && overlaps(seqs, m.first_seq, m.last_seq)
            })
            .map(|p| p.reader.searcher())
            .collect();
        (q, searchers)
    }

    /// Counts of matching lines per bucket of `width` ns from `since` to `until`.
    ///
    /// # Errors
    /// A failed search.
    pub fn histogram(
        &self,
        query: &LogQuery,
        since: i64,
        until: i64,
        width: i64,
    ) -> Result<Vec<u64>, Error> {
        let width = width.max(1);
        let buckets = ((until - since) / width + 1).clamp(1, 10_000) as usize;
        let (q, searchers) = {
            let inner = self.lock();
            let q = self.with_time(
                &*self.tantivy_query(&inner, query),
                Some(since),
                Some(until),
            );
            let searchers: Vec<_> = inner
                .partitions
                .iter()
                .filter(|p| {
                    p.meta.lines > 0 && p.meta.max_time >= since && p.meta.min_time <= until
                })
                .map(|p| p.reader.searcher())
                .collect();
            (q, searchers)
        };
        let mut counts = vec![0_u64; buckets];
        for searcher in searchers {
            let collector =
                HistogramCollector::new::<i64>("time".to_owned(), since, width as u64, buckets);
            let part = searcher.search(&*q, &collector).map_err(|e| self.err(e))?;
            for (c, n) in counts.iter_mut().zip(part) {
                *c += n;
            }
        }
        Ok(counts)
    }

    fn with_time(
        &self,
        query: &dyn Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Box<dyn Query> {
        if since.is_none() && until.is_none() {
            return query.box_clone();
        }
        let bound = |v: Option<i64>| match v {
            Some(v) => std::ops::Bound::Included(Term::from_field_i64(self.f.time, v)),
            None => std::ops::Bound::Unbounded,
        };
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query.box_clone()),
            (
                Occur::Must,
                Box::new(RangeQuery::new(bound(since), bound(until))),
            ),
        ]))
    }
}

/// Whether sequence numbers `first..=last` can hold one within `seqs`.
fn overlaps(seqs: (Bound<u64>, Bound<u64>), first: u64, last: u64) -> bool {
    let above = match seqs.0 {
        Bound::Included(a) => last >= a,
        Bound::Excluded(a) => last > a,
        Bound::Unbounded => true,
    };
    let below = match seqs.1 {
        Bound::Included(b) => first <= b,
        Bound::Excluded(b) => first < b,
        Bound::Unbounded => true,
    };
    above && below
}

/// The `want` matches of `query` first in `order` of sequence number (highest first for
/// [`Order::Desc`]). Segments are searched in that order, those outside `seqs` skipped, and the
/// search stops at a segment whose lines all come after the ones found: the newest lines of a
/// flood, or the next page of an export, cost a segment's matches, not the partition's.
fn first_by_seq(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    want: usize,
    order: Order,
    seqs: (Bound<u64>, Bound<u64>),
) -> tantivy::Result<Vec<DocAddress>> {
    use tantivy::collector::Collector;
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let collector = TopDocs::with_limit(want).order_by_fast_field::<u64>("seq", order);
    // each segment's lowest and highest sequence numbers
    let mut segments: Vec<(u64, u64, u32)> = searcher
        .segment_readers()
        .iter()
        .enumerate()
        .map(|(ord, r)| {
            let column = r.fast_fields().u64("seq");
            let min = column
                .as_ref()
                .map_or(0, tantivy::columnar::Column::min_value);
            let max = column.map_or(u64::MAX, |c| c.max_value());
            (min, max, ord as u32)
        })
        .filter(|(min, max, _)| overlaps(seqs, *min, *max))
        .collect();
    match order {
        Order::Desc => segments.sort_unstable_by_key(|s| std::cmp::Reverse(s.1)),
        Order::Asc => segments.sort_unstable_by_key(|s| s.0),
    }
    let comes_first = |a: u64, b: u64| match order {
        Order::Desc => a > b,
        Order::Asc => a < b,
    };
    let mut best: Vec<(u64, DocAddress)> = Vec::new();
    for (min, max, ord) in segments {
        // every line of this segment comes after the worst one kept
        let nearest = if order == Order::Desc { max } else { min };
        if best.len() >= want
            && best
                .last()
                .is_some_and(|(seq, _)| !comes_first(nearest, *seq))
        {
            break;
        }
        let reader = searcher.segment_reader(ord);
        let fruit = collector.collect_segment(&*weight, ord, reader)?;
        let fruit = collector.merge_fruits(vec![fruit])?;
        best.extend(
            fruit
                .into_iter()
                .map(|(seq, addr)| (seq.unwrap_or(0), addr)),
        );
        match order {
            Order::Desc => best.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq)),
            Order::Asc => best.sort_unstable_by_key(|(seq, _)| *seq),
        }
        best.truncate(want);
    }
    Ok(best.into_iter().map(|(_, addr)| addr).collect())
}
