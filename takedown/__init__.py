"""E-mailed takedowns: removal requests -> ledger -> images removed from a release -> receipts.

    veilset takedown ingest --ledger L.sqlite (--maildir DIR | --mbox FILE | --eml FILE_OR_DIR | --imap URL)
                            [--release DIR] [--watch SECONDS] [--require-dkim] [limits ...]
    veilset takedown apply  --ledger L.sqlite --release DIR        # release N -> N+1, only affected shards
    veilset takedown notify --ledger L.sqlite (--smtp HOST:PORT [--starttls] | --outbox DIR)
    veilset takedown status --ledger L.sqlite [--json] [--approve REQUEST_ID]
    veilset takedown review --ledger L.sqlite [--approve REQ | --reject REQ --reason TEXT] [--by NAME]
    veilset build ... --ledger L.sqlite                            # never publishes a removed image again

Modules: ``intake`` (parse untrusted mail; eml/Maildir/mbox sources), ``imap`` (IMAP source), ``authenticity``
(DKIM, trusted Authentication-Results, From alignment -> verified/unverified/failed), ``policy`` (what is
removed automatically, what waits for a person), ``ledger`` (SQLite: requests, IDs, blocklist, append-only
history; the read API used by build and audit), ``apply`` (crash-safe shard rewrite), ``notify`` (receipts),
``cli``.
"""
