#!/usr/bin/env python3
"""Writes the signed seeds of the `webhook` fuzz target into corpus/webhook/.

The signatures are computed here, independently of the Rust code, with the SECRET and NOW_MS
of fuzz_targets/webhook.rs (keep them in sync). The Contentful signer is checked against the
vector made by @contentful/node-apps-toolkit that src/webhook/contentful.rs tests with.
Run from anywhere: python3 fuzz/make_webhook_seeds.py
"""
import base64, hashlib, hmac, json, os

SECRET = "q7Hn2bV9xK4mP0sL8dR3tY6wZ1cF5gJ2hN7vB4kM9pQ3rT8xW0yE6uI1oA5sD2fG"
NOW_MS = 1_700_000_000_000
URL = "https://isr.example.com/api/revalidate"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "webhook")


def mac(*parts):
    return hmac.new(SECRET.encode(), b"".join(parts), hashlib.sha256).digest()


def message(first, headers, body=b""):
    head = "\n".join([first] + [f"{n}: {v}" for n, v in headers])
    return head.encode() + b"\n\n" + body


def contentful_headers(path, body, topic="ContentManagement.Entry.publish"):
    # Canonical request of @contentful/node-apps-toolkit (no query in these seeds).
    assert "?" not in path
    signed = "content-type,x-contentful-signed-headers,x-contentful-timestamp,x-contentful-topic"
    ctype = "application/vnd.contentful.management.v1+json"
    canonical = (f"POST\n{path}\ncontent-type:{ctype};x-contentful-signed-headers:{signed};"
                 f"x-contentful-timestamp:{NOW_MS};x-contentful-topic:{topic}\n").encode() + body
    return [("Content-Type", ctype), ("X-Contentful-Topic", topic), ("X-Contentful-Webhook-Name", "edge-isr"),
            ("x-contentful-signature", mac(canonical).hex()), ("x-contentful-signed-headers", signed),
            ("x-contentful-timestamp", str(NOW_MS))]


def dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# The toolkit's own vector (src/webhook/contentful.rs, PLAIN_SIGNATURE).
_vector_body = b'{"sys":{"type":"Entry","contentType":{"sys":{"id":"post"}}},"fields":{"slug":{"en-US":"hello"}}}'
assert dict(contentful_headers("/api/revalidate", _vector_body))["x-contentful-signature"] == \
    "a32762670a54b5a0c5c1f67ab8fb01dce9c9bd2841df106e8953901c14e48a87"

json_ct = ("Content-Type", "application/json")
edge = dumps({"tags": ["posts", "post-hello"], "paths": ["/about", "/blog?page=2"], "prefixes": ["/blog/"], "mode": "stale"})
t_s = str(NOW_MS // 1000)
sanity_body = dumps({
    "_createdAt": "2023-11-14T22:10:11Z", "_id": "drafts.0d4b3c1e-7f8a-4b2c-9d6e-5a1f3b2c4d5e", "_rev": "qwHPfn7LcRFd2XmEr1DzYt",
    "_type": "post", "_updatedAt": "2023-11-14T22:13:20Z", "slug": {"_type": "slug", "current": "hello-world"},
    "title": "Hello, world", "author": {"_ref": "a1b2c3", "_type": "reference"},
    "body": [{"_key": "k1", "_type": "block", "children": [{"_key": "s1", "_type": "span", "marks": [], "text": "Hi é"}],
              "markDefs": [], "style": "normal"}]})
contentful_body = dumps({
    "metadata": {"tags": []},
    "sys": {"type": "Entry", "id": "5KsDBWseXY6QegucYAoacS", "space": {"sys": {"type": "Link", "linkType": "Space", "id": "yadj1kx9rmg0"}},
            "environment": {"sys": {"id": "master", "type": "Link", "linkType": "Environment"}},
            "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": "post"}},
            "revision": 7, "createdAt": "2023-11-14T22:10:11.123Z", "updatedAt": "2023-11-14T22:13:20.456Z"},
    "fields": {"title": {"en-US": "Hello"}, "slug": {"en-US": "hello world/é"}}})
strapi_body = dumps({
    "event": "entry.publish", "createdAt": "2023-11-14T22:13:20.456Z", "model": "post", "uid": "api::post.post",
    "entry": {"id": 42, "documentId": "a1b2c3d4e5", "title": "Hello", "slug": "hello-world",
              "createdAt": "2023-11-14T22:10:11.123Z", "updatedAt": "2023-11-14T22:13:20.456Z",
              "publishedAt": "2023-11-14T22:13:20.456Z", "locale": "en"}})

seeds = {
    "bearer-edge-isr": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}"), json_ct], edge),
    "secret-header-singles": message(f"POST {URL}", [("X-ISR-Secret", SECRET), json_ct],
                                     dumps({"tag": "home", "path": "/a?x=1", "prefix": "/docs/", "mode": "expire"})),
    "query-secret": message(f"POST {URL}?secret={SECRET}&tag=posts&tag=a%20b&path=%2Fp%3Fq%3D1&prefix=/blog/&mode=expire", []),
    "isr-signature": message(f"POST {URL}", [("x-isr-signature", f"t={t_s},v1={mac(t_s.encode(), b'.', edge).hex()}"), json_ct], edge),
    "sanity": message(f"POST {URL}", [("content-type", "application/json; charset=utf-8"), ("idempotency-key", "msg-1"),
                                      ("sanity-webhook-signature", f"t={NOW_MS},v1=" + base64.urlsafe_b64encode(
                                          mac(str(NOW_MS).encode(), b".", sanity_body)).decode().rstrip("="))], sanity_body),
    "contentful-vector": message(f"POST {URL}", contentful_headers("/api/revalidate", _vector_body), _vector_body),
    "contentful-entry": message(f"POST {URL}", contentful_headers("/api/revalidate", contentful_body), contentful_body),
    "strapi": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}"), json_ct, ("User-Agent", "Strapi")], strapi_body),
    # Refused or malformed ones, for the error paths.
    "wrong-credentials": message(f"POST {URL}?secret=nope", [("Authorization", "Basic dXNlcjpwYXNz"), ("x-isr-secret", "wrong"),
                                                              ("x-isr-signature", "t=1699999000,v1=" + "0" * 64),
                                                              ("sanity-webhook-signature", "t=1700000000000,v1=abc"),
                                                              ("x-contentful-signature", "f" * 64), ("x-contentful-timestamp", "1"),
                                                              ("x-contentful-signed-headers", "a")], b'{"tags":["x"]}'),
    "get-method": message(f"GET {URL}?tag=posts", [("x-isr-secret", SECRET)]),
    "bad-json": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}")], b'{"tags": ["a", }'),
    "bad-values": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}")],
                          dumps({"tags": ["", "a\u0007", "x" * 257], "paths": ["blog", "/a#b"], "prefixes": ["/p?q"], "mode": "purge"})),
    "unknown-query": message(f"POST {URL}?utm=1&tag=&mode=purge&tag=ok", [("Authorization", f"Bearer {SECRET}")]),
    "too-many": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}")], dumps({"tags": [f"t{i}" for i in range(257)]})),
    "unmatched-payload": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}")],
                                 dumps({"_type": "author", "slug": {"current": "x"}, "tags": ["not", "ours"]})),
    "array-body": message(f"POST {URL}", [("Authorization", f"Bearer {SECRET}")], b'[1, "two", null, true, 2.5e3]'),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
