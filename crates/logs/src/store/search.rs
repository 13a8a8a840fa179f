//! Reading the store: searches newest first, lines after a sequence number (sinks, live
//! tails), histograms; each visits only the partitions whose time range can match.

use tantivy::collector::{Count, HistogramCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::{DocAddress, Order, Term};

use capstan_model::LogLine;

use super::{Error, Store};
use crate::query::LogQuery;

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
        // the query and the partitions' searchers under the lock, the search without it: a
        // long search never holds up the commits ingestion needs
        let (q, searchers) = {
            let inner = self.lock();
            let q = self.with_time(&*self.tantivy_query(&inner, query), since, until);
            let searchers: Vec<_> = inner
                .partitions
                .iter()
                .rev()
                .filter(|p| {
                    p.meta.lines > 0
                        && since.is_none_or(|s| p.meta.max_time >= s)
                        && until.is_none_or(|u| p.meta.min_time <= u)
                })
                .map(|p| p.reader.searcher())
                .collect();
            (q, searchers)
        };
        let mut out = Vec::new();
        let mut total = 0;
        for searcher in searchers {
            // counted apart: a term query is then counted from its document frequency
            let count = searcher.search(&*q, &Count).map_err(|e| self.err(e))?;
            total += count as u64;
            let want = limit.saturating_sub(out.len());
            if want == 0 || count == 0 {
                continue;
            }
            for addr in newest(&searcher, &*q, want).map_err(|e| self.err(e))? {
                out.push(self.line(&searcher, addr)?);
            }
        }
        out.truncate(limit);
        Ok((self.with_origins(out), total))
    }

    /// Lines with a sequence number after `after`, oldest first, up to `limit` (for sinks and
    /// live tails).
    ///
    /// # Errors
    /// A failed search.
    pub fn after(&self, after: u64, query: &LogQuery, limit: usize) -> Result<Vec<LogLine>, Error> {
        let (query, searchers) = {
            let inner = self.lock();
            let searchers: Vec<_> = inner
                .partitions
                .iter()
                .filter(|p| p.meta.last_seq > after)
                .map(|p| p.reader.searcher())
                .collect();
            (self.tantivy_query(&inner, query), searchers)
        };
        let range: Box<dyn Query> = Box::new(RangeQuery::new(
            std::ops::Bound::Excluded(Term::from_field_u64(self.f.seq, after)),
            std::ops::Bound::Unbounded,
        ));
        let q = BooleanQuery::new(vec![(Occur::Must, range), (Occur::Must, query.box_clone())]);
        let mut out = Vec::new();
        for searcher in searchers {
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let top = searcher
                .search(
                    &q,
                    &TopDocs::with_limit(want).order_by_fast_field::<u64>("seq", Order::Asc),
                )
                .map_err(|e| self.err(e))?;
            for (_, addr) in top {
                out.push(self.line(&searcher, addr)?);
            }
        }
        Ok(self.with_origins(out))
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

/// The `want` matches of `query` with the highest sequence numbers, highest first. Segments
/// are searched newest first, and the search stops at a segment whose lines are all older than
/// the ones found: the newest lines of a flood cost one segment's matches, not the partition's.
fn newest(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    want: usize,
) -> tantivy::Result<Vec<DocAddress>> {
    use tantivy::collector::Collector;
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let collector = TopDocs::with_limit(want).order_by_fast_field::<u64>("seq", Order::Desc);
    let mut segments: Vec<(u64, u32)> = searcher
        .segment_readers()
        .iter()
        .enumerate()
        .map(|(ord, r)| {
            let max = r
                .fast_fields()
                .u64("seq")
                .map_or(u64::MAX, |c| c.max_value());
            (max, ord as u32)
        })
        .collect();
    segments.sort_unstable_by(|a, b| b.cmp(a));
    let mut best: Vec<(u64, DocAddress)> = Vec::new();
    for (max, ord) in segments {
        if best.len() >= want && best.last().is_some_and(|(seq, _)| *seq >= max) {
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
        best.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        best.truncate(want);
    }
    Ok(best.into_iter().map(|(_, addr)| addr).collect())
}
