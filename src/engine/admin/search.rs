//! Which stored pages the admin page lists: all of them, those under a path prefix, or those
//! carrying a tag (through the tag index), a page of at most 1,000 at a time with KV's list
//! cursor to go on.

use super::ADMIN_PAGE_LIMIT;
use crate::engine::Engine;
use crate::runtime::origin::Origin;
use crate::store::{layout, KvStore, ListedKey, StoreError};

/// Most pages one tag search shows: each costs a KV call to read its state (a `list` of its own
/// key, which returns the metadata without the body), within KV's 1,000 calls per invocation.
pub const TAG_PAGE_LIMIT: u32 = 200;

/// What the admin page was asked to list (its URL's `prefix`, `tag`, `cursor` and `limit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    /// Path prefix (`/blog/`, on the site's host) or page id prefix (`example.com/blog/`).
    pub prefix: String,
    /// Tag whose pages to list.
    pub tag: String,
    /// KV list cursor of the next page of results.
    pub cursor: Option<String>,
    /// Most rows, 1 to [`ADMIN_PAGE_LIMIT`].
    pub limit: u32,
}

impl Default for PageQuery {
    /// Every page, from the first.
    fn default() -> Self {
        PageQuery { prefix: String::new(), tag: String::new(), cursor: None, limit: ADMIN_PAGE_LIMIT }
    }
}

impl PageQuery {
    /// Reads the query from the admin page's URL (missing or malformed parts take defaults).
    pub fn from_url(url: &url::Url) -> PageQuery {
        let mut q = PageQuery::default();
        for (name, value) in url.query_pairs() {
            let value = value.trim().to_string();
            match name.as_ref() {
                "prefix" => q.prefix = value,
                "tag" => q.tag = value,
                "cursor" if !value.is_empty() => q.cursor = Some(value),
                "limit" => q.limit = value.parse::<u32>().map_or(ADMIN_PAGE_LIMIT, |n| n.clamp(1, ADMIN_PAGE_LIMIT)),
                _ => {}
            }
        }
        q
    }

    /// The page-id prefix searched: a path prefix is on `host`.
    pub fn id_prefix(&self, host: &str) -> String {
        match self.prefix.as_str() {
            "" => String::new(),
            p if p.starts_with('/') => format!("{host}{p}"),
            p => p.to_string(),
        }
    }

    /// The admin page's query string for the results after `cursor`.
    pub fn next_query(&self, cursor: &str) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if !self.prefix.is_empty() {
            s.append_pair("prefix", &self.prefix);
        }
        if !self.tag.is_empty() {
            s.append_pair("tag", &self.tag);
        }
        if self.limit != ADMIN_PAGE_LIMIT {
            s.append_pair("limit", &self.limit.to_string());
        }
        s.append_pair("cursor", cursor);
        format!("?{}", s.finish())
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// The page keys (with their metadata) `q` asks for on `host`, and the cursor of the next
    /// results when there are more.
    pub(crate) async fn search_pages(&self, q: &PageQuery, host: &str) -> Result<(Vec<ListedKey>, Option<String>), StoreError> {
        let version = &self.config.cache_version;
        let id_prefix = q.id_prefix(host);
        if q.tag.is_empty() {
            let page = self.store.list(&layout::page_prefix(version, &id_prefix), q.cursor.as_deref(), q.limit).await?;
            let next = if page.complete { None } else { page.cursor };
            return Ok((page.keys, next));
        }
        let members_prefix = layout::tag_prefix(version, &q.tag);
        let members = self.store.list(&members_prefix, q.cursor.as_deref(), q.limit.min(TAG_PAGE_LIMIT)).await?;
        let mut keys = Vec::new();
        for member in &members.keys {
            let Some(id) = member.name.strip_prefix(&members_prefix) else { continue };
            if !id.starts_with(&id_prefix) {
                continue;
            }
            let page_key = layout::page_key(version, id);
            // The exact key sorts first among keys starting with it.
            let found = self.store.list(&page_key, None, 1).await?;
            keys.extend(found.keys.into_iter().filter(|k| k.name == page_key));
        }
        let next = if members.complete { None } else { members.cursor };
        Ok((keys, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> PageQuery {
        PageQuery::from_url(&url::Url::parse(&format!("https://site.test/__isr/admin{q}")).unwrap())
    }

    #[test]
    fn the_query_comes_from_the_url_with_bounded_limits() {
        assert_eq!(query(""), PageQuery::default());
        assert_eq!(PageQuery::default().limit, 1000);
        let q = query("?prefix=%2Fblog%2F&tag=post%2F1&cursor=abc&limit=5");
        assert_eq!((q.prefix.as_str(), q.tag.as_str(), q.cursor.as_deref(), q.limit), ("/blog/", "post/1", Some("abc"), 5));
        assert_eq!(query("?limit=0").limit, 1);
        assert_eq!(query("?limit=5000").limit, 1000);
        assert_eq!(query("?limit=x").limit, 1000);
        assert_eq!(q.id_prefix("site.test"), "site.test/blog/");
        assert_eq!(query("?prefix=other.test/a").id_prefix("site.test"), "other.test/a");
        assert_eq!(q.next_query("c 2"), "?prefix=%2Fblog%2F&tag=post%2F1&limit=5&cursor=c+2");
        assert_eq!(query("?cursor=x").next_query("y"), "?cursor=y");
    }
}
