"""PostgreSQL fast path: post one entry, or a batch of entries, in one round trip.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Both functions apply exactly the rules of ledger.journal's Python path (which SQLite
uses): replay or conflict by key, refusals remembered, accounts locked in id order,
open/currency/overdraft checks in the Python path's order, then the writes. They raise
nothing for domain refusals; they return a status that ledger.journal turns into the same
exceptions as the Python path. Nothing is written before every check has passed.

- ``ledger_post_entry`` posts one entry (the common case: every use-case's ``post()``)
  with index lookups and a few tiny statements. Its plans are generic, planned once per
  connection: left to choose, PostgreSQL would re-plan them on every call (custom plans
  look cheaper for array parameters), which cost more than the statements themselves.
- ``ledger_post_entries`` posts a batch set-based: one lookup of all keys, one locking
  scan, one checking query over the whole batch, then one INSERT each for entries and
  postings and one UPDATE of balances. It is planned for each call's actual sizes.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

POST_ENTRY = r"""
CREATE FUNCTION ledger_post_entry(
    p_key text,
    p_content jsonb,            -- canonical content: postings, effective_at, description, metadata
    p_reverses_id bigint,
    p_accounts bigint[],        -- the postings, in the draft's order
    p_amounts bigint[],
    p_currencies text[],
    p_now timestamptz,
    p_release_account bigint,   -- a hold being captured frees this much of that account
    p_release_amount bigint,
    OUT status text,            -- posted | replayed | raced | conflict | rejected | account_not_found
    OUT entry_id bigint,        --   | account_not_open | currency_mismatch | insufficient_funds
    OUT detail jsonb
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id bigint;
    v_stored jsonb;
    v_refused jsonb;
    v_message text;
    a_ids bigint[];             -- the locked accounts, in id order
    a_debit_normal boolean[];
    a_currencies text[];
    a_statuses text[];
    a_no_overdraft boolean[];
    a_available bigint[];
    d_ids bigint[] := '{}';     -- the entry's net change per account, in order of first posting
    d_values bigint[] := '{}';
    v_missing bigint;
    v_delta bigint;
    v_available bigint;
    k int;
    j int;
BEGIN
    -- 1. a key already used: replay the same content, refuse other content, repeat a refusal
    SELECT e.id, e.content, r.content, r.message INTO v_id, v_stored, v_refused, v_message
      FROM (SELECT p_key AS key) k
      LEFT JOIN ledger_entries e ON e.key = k.key
      LEFT JOIN ledger_rejections r ON r.key = k.key;
    IF v_id IS NOT NULL THEN
        IF v_stored = p_content THEN
            status := 'replayed';
            entry_id := v_id;
        ELSE
            status := 'conflict';
            detail := v_stored;
        END IF;
        RETURN;
    END IF;
    IF v_message IS NOT NULL THEN
        status := 'rejected';
        detail := jsonb_build_object('content', v_refused, 'message', v_message);
        RETURN;
    END IF;

    -- 2. lock the accounts in the one global order (by id) and read them
    SELECT array_agg(x.id), array_agg(x.type IN ('asset', 'expense')), array_agg(x.currency),
           array_agg(x.status), array_agg(x.no_overdraft), array_agg(x.balance - x.held)
      INTO a_ids, a_debit_normal, a_currencies, a_statuses, a_no_overdraft, a_available
      FROM (SELECT * FROM ledger_accounts WHERE id = ANY(p_accounts) ORDER BY id FOR NO KEY UPDATE) x;

    -- 3. checks, before any write: unknown accounts (the lowest id first), then posting by
    --    posting open and currency, then overdraft per account in order of first posting
    FOR k IN 1 .. cardinality(p_accounts) LOOP
        IF a_ids IS NULL OR array_position(a_ids, p_accounts[k]) IS NULL THEN
            v_missing := least(v_missing, p_accounts[k]);
        END IF;
    END LOOP;
    IF v_missing IS NOT NULL THEN
        status := 'account_not_found';
        detail := jsonb_build_object('account_id', v_missing);
        RETURN;
    END IF;
    FOR k IN 1 .. cardinality(p_accounts) LOOP
        j := array_position(a_ids, p_accounts[k]);
        IF a_statuses[j] <> 'open' THEN
            status := 'account_not_open';
            detail := jsonb_build_object('account_id', a_ids[j], 'status', a_statuses[j]);
            RETURN;
        END IF;
        IF a_currencies[j] <> p_currencies[k] THEN
            status := 'currency_mismatch';
            detail := jsonb_build_object(
                'account_id', a_ids[j], 'account_currency', a_currencies[j], 'currency', p_currencies[k]);
            RETURN;
        END IF;
        v_delta := CASE WHEN a_debit_normal[j] THEN p_amounts[k] ELSE -p_amounts[k] END;
        j := array_position(d_ids, p_accounts[k]);
        IF j IS NULL THEN
            d_ids := d_ids || p_accounts[k];
            d_values := d_values || v_delta;
        ELSE
            d_values[j] := d_values[j] + v_delta;
        END IF;
    END LOOP;
    FOR k IN 1 .. cardinality(d_ids) LOOP
        CONTINUE WHEN d_values[k] >= 0;
        j := array_position(a_ids, d_ids[k]);
        CONTINUE WHEN NOT a_no_overdraft[j];
        v_available := a_available[j]
            + CASE WHEN d_ids[k] = p_release_account THEN p_release_amount ELSE 0 END;
        IF v_available + d_values[k] < 0 THEN
            status := 'insufficient_funds';
            detail := jsonb_build_object('account_id', d_ids[k], 'available', v_available, 'needed', -d_values[k]);
            RETURN;
        END IF;
    END LOOP;

    -- 4. writes, in one statement: the entry (unless a concurrent transaction committed its
    --    key since step 1), its postings and the balances, the last two only with the entry
    WITH new_entry AS (
        INSERT INTO ledger_entries (key, description, metadata, effective_at, created_at, reverses_id, content)
        VALUES (p_key, p_content->>'description', p_content->'metadata',
                (p_content->>'effective_at')::timestamptz, p_now, p_reverses_id, p_content)
        ON CONFLICT (key) DO NOTHING
        RETURNING id
    ), inserted_postings AS (
        INSERT INTO ledger_postings (entry_id, account_id, amount, currency)
        SELECT n.id, u.a, u.m, u.c
          FROM new_entry n, unnest(p_accounts, p_amounts, p_currencies) WITH ORDINALITY AS u(a, m, c, o)
         ORDER BY u.o
    ), balances AS (
        UPDATE ledger_accounts x SET balance = x.balance + u.d
          FROM new_entry n, unnest(d_ids, d_values) AS u(a, d)
         WHERE x.id = u.a AND u.d <> 0
    )
    SELECT n.id INTO v_id FROM new_entry n;
    IF v_id IS NULL THEN
        status := 'raced';
        RETURN;
    END IF;
    status := 'posted';
    entry_id := v_id;
END $$
"""

POST_ENTRIES = r"""
CREATE FUNCTION ledger_post_entries(
    p_keys text[],
    p_contents jsonb,           -- JSON array: each entry's canonical content, aligned with p_keys
    p_entry_idx int[],          -- per posting: 1-based position of its entry in p_keys, non-decreasing
    p_accounts bigint[],
    p_amounts bigint[],
    p_currencies text[],
    p_now timestamptz,
    OUT status text,            -- posted | replayed | conflict | rejected | account_not_found
    OUT idx int,                --   | account_not_open | currency_mismatch | insufficient_funds
    OUT entry_ids bigint[],     -- on success, the entries' ids in batch order
    OUT detail jsonb
) LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    n int := cardinality(p_keys);
    old_idx int[];              -- entries whose key is already posted (replayed), and their ids
    old_ids bigint[];
    v_conflict int;
    is_old boolean[];
    f_pos int[];                -- the fresh entries' batch positions (NULL: the whole batch)
    f_keys text[];
    f_entry int[];              -- the fresh entries' postings, renumbered 1..n_fresh
    f_accounts bigint[];
    f_amounts bigint[];
    f_currencies text[];
    a_ids bigint[];             -- the locked accounts
    a_debit_normal boolean[];
    a_currencies text[];
    a_statuses text[];
    a_no_overdraft boolean[];
    a_available bigint[];
    u_ids bigint[];             -- net balance change per account over the batch
    u_deltas bigint[];
    v_missing bigint;
    v_bad_posting int;
    v_maybe_short boolean;
    new_ids bigint[];
    bad record;
    k int;
BEGIN
    -- 1. keys already used: replay if the content is the same, conflict if not
    SELECT coalesce(array_agg(k.i::int ORDER BY k.i), '{}'), coalesce(array_agg(f.id ORDER BY k.i), '{}'),
           min(k.i) FILTER (WHERE f.content <> p_contents->(k.i::int - 1))
      INTO old_idx, old_ids, v_conflict
      FROM (SELECT e.id, e.key, e.content FROM ledger_entries e WHERE e.key = ANY(p_keys)) f
      JOIN unnest(p_keys) WITH ORDINALITY AS k(key, i) ON k.key = f.key;
    IF v_conflict IS NOT NULL THEN
        SELECT e.content INTO detail FROM ledger_entries e WHERE e.key = p_keys[v_conflict];
        status := 'conflict';
        idx := v_conflict;
        RETURN;
    END IF;
    SELECT k.i::int, jsonb_build_object('content', r.content, 'message', r.message) INTO idx, detail
      FROM (SELECT * FROM ledger_rejections WHERE key = ANY(p_keys)) r
      JOIN unnest(p_keys) WITH ORDINALITY AS k(key, i) ON k.key = r.key
     ORDER BY k.i LIMIT 1;
    IF FOUND THEN
        status := 'rejected';
        RETURN;
    END IF;
    IF cardinality(old_idx) = n THEN
        status := 'replayed';
        entry_ids := old_ids;
        RETURN;
    END IF;
    IF cardinality(old_idx) = 0 THEN
        f_keys := p_keys;
        f_entry := p_entry_idx;
        f_accounts := p_accounts;
        f_amounts := p_amounts;
        f_currencies := p_currencies;
    ELSE
        is_old := array_fill(false, ARRAY[n]);
        FOREACH k IN ARRAY old_idx LOOP
            is_old[k] := true;
        END LOOP;
        SELECT array_agg(k.i::int ORDER BY k.i), array_agg(k.key ORDER BY k.i) INTO f_pos, f_keys
          FROM unnest(p_keys) WITH ORDINALITY AS k(key, i) WHERE NOT is_old[k.i];
        SELECT array_agg(s.r ORDER BY s.o), array_agg(s.a ORDER BY s.o), array_agg(s.m ORDER BY s.o),
               array_agg(s.c ORDER BY s.o)
          INTO f_entry, f_accounts, f_amounts, f_currencies
          FROM (SELECT dense_rank() OVER (ORDER BY u.i)::int AS r, u.*
                  FROM unnest(p_entry_idx, p_accounts, p_amounts, p_currencies) WITH ORDINALITY AS u(i, a, m, c, o)
                 WHERE NOT is_old[u.i]) s;
    END IF;

    -- 2. lock every account the fresh postings touch, in the one global order (by id)
    SELECT array_agg(x.id), array_agg(x.type IN ('asset', 'expense')), array_agg(x.currency),
           array_agg(x.status), array_agg(x.no_overdraft), array_agg(x.balance - x.held)
      INTO a_ids, a_debit_normal, a_currencies, a_statuses, a_no_overdraft, a_available
      FROM (SELECT * FROM ledger_accounts WHERE id IN (SELECT DISTINCT a FROM unnest(f_accounts) AS a)
             ORDER BY id FOR NO KEY UPDATE) x;

    -- 3. checks, before any write, in one pass over the batch: unknown accounts; the first
    --    posting to a closed account or in another currency; whether any no-overdraft
    --    account could go short (then the exact running check below); the balance changes
    WITH p AS (
        SELECT u.i, u.o, u.a, u.c, x.id AS known, x.account_status, x.currency AS account_currency,
               x.no_overdraft, x.available, CASE WHEN x.debit_normal THEN u.m ELSE -u.m END AS d
          FROM unnest(f_entry, f_accounts, f_amounts, f_currencies) WITH ORDINALITY AS u(i, a, m, c, o)
          LEFT JOIN unnest(a_ids, a_debit_normal, a_currencies, a_statuses, a_no_overdraft, a_available)
               AS x(id, debit_normal, currency, account_status, no_overdraft, available) ON x.id = u.a
    ), per_account AS (
        SELECT a, sum(d) AS total, coalesce(sum(d) FILTER (WHERE d < 0), 0) AS debits,
               bool_or(no_overdraft) AS no_overdraft, min(available) AS available
          FROM p WHERE known IS NOT NULL GROUP BY a
    )
    SELECT (SELECT min(a) FROM p WHERE known IS NULL),
           (SELECT min(o) FROM p WHERE known IS NOT NULL AND (account_status <> 'open' OR account_currency <> c)),
           (SELECT coalesce(bool_or(no_overdraft AND available + debits < 0), false) FROM per_account),
           (SELECT array_agg(a ORDER BY a) FROM per_account WHERE total <> 0),
           (SELECT array_agg(total ORDER BY a) FROM per_account WHERE total <> 0)
      INTO v_missing, v_bad_posting, v_maybe_short, u_ids, u_deltas;
    IF v_missing IS NOT NULL THEN
        status := 'account_not_found';
        detail := jsonb_build_object('account_id', v_missing);
        idx := coalesce(f_pos[f_entry[array_position(f_accounts, v_missing)]],
                        f_entry[array_position(f_accounts, v_missing)]);
        RETURN;
    END IF;
    IF v_maybe_short THEN
        -- entry by entry in batch order, the running available balance of each no-overdraft
        -- account after each entry's net change to it
        WITH per_entry AS (
            SELECT u.i, u.a, min(u.o) AS first_posting,
                   sum(CASE WHEN x.debit_normal THEN u.m ELSE -u.m END) AS delta, min(x.available) AS available
              FROM unnest(f_entry, f_accounts, f_amounts) WITH ORDINALITY AS u(i, a, m, o)
              JOIN unnest(a_ids, a_debit_normal, a_no_overdraft, a_available)
                   AS x(id, debit_normal, no_overdraft, available) ON x.id = u.a
             WHERE x.no_overdraft
             GROUP BY u.i, u.a
        ), running AS (
            SELECT e.i, e.a, e.first_posting, e.delta,
                   e.available + sum(e.delta) OVER (PARTITION BY e.a ORDER BY e.i) AS available_after
              FROM per_entry e
        )
        SELECT r.i, r.a, r.available_after - r.delta AS available, -r.delta AS needed INTO bad
          FROM running r WHERE r.delta < 0 AND r.available_after < 0
         ORDER BY r.i, r.first_posting LIMIT 1;
        IF FOUND AND (v_bad_posting IS NULL OR bad.i < f_entry[v_bad_posting]) THEN
            status := 'insufficient_funds';
            idx := coalesce(f_pos[bad.i], bad.i);
            detail := jsonb_build_object('account_id', bad.a, 'available', bad.available, 'needed', bad.needed);
            RETURN;
        END IF;
    END IF;
    IF v_bad_posting IS NOT NULL THEN
        k := array_position(a_ids, f_accounts[v_bad_posting]);
        idx := coalesce(f_pos[f_entry[v_bad_posting]], f_entry[v_bad_posting]);
        IF a_statuses[k] <> 'open' THEN
            status := 'account_not_open';
            detail := jsonb_build_object('account_id', a_ids[k], 'status', a_statuses[k]);
        ELSE
            status := 'currency_mismatch';
            detail := jsonb_build_object('account_id', a_ids[k], 'account_currency', a_currencies[k],
                                         'currency', f_currencies[v_bad_posting]);
        END IF;
        RETURN;
    END IF;

    -- 4. writes: ids first, so that entries and postings go in with one INSERT each; a key
    --    that a concurrent transaction committed since step 1 fails the INSERT (unique key)
    new_ids := ARRAY(SELECT nextval('ledger_entries_id_seq') FROM generate_series(1, cardinality(f_keys)));
    INSERT INTO ledger_entries (id, key, description, metadata, effective_at, created_at, reverses_id, content)
    SELECT e.id, e.key, c.doc->>'description', c.doc->'metadata', (c.doc->>'effective_at')::timestamptz,
           p_now, NULL, c.doc
      FROM unnest(new_ids, f_keys) WITH ORDINALITY AS e(id, key, o)
     CROSS JOIN LATERAL (SELECT p_contents->(coalesce(f_pos[e.o], e.o)::int - 1) AS doc) c
     ORDER BY e.o;
    INSERT INTO ledger_postings (entry_id, account_id, amount, currency)
    SELECT new_ids[u.i], u.a, u.m, u.c
      FROM unnest(f_entry, f_accounts, f_amounts, f_currencies) WITH ORDINALITY AS u(i, a, m, c, o)
     ORDER BY u.o;
    UPDATE ledger_accounts x SET balance = x.balance + u.d
      FROM unnest(u_ids, u_deltas) AS u(a, d)
     WHERE x.id = u.a;
    status := 'posted';
    IF f_pos IS NULL THEN
        entry_ids := new_ids;
    ELSE
        SELECT array_agg(m.id ORDER BY m.i) INTO entry_ids
          FROM (SELECT * FROM unnest(old_idx, old_ids) AS o(i, id)
                UNION ALL SELECT * FROM unnest(f_pos, new_ids) AS f(i, id)) m;
    END IF;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POST_ENTRY)
        op.execute(POST_ENTRIES)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS ledger_post_entry(text, jsonb, bigint, bigint[], bigint[], text[], "
            "timestamptz, bigint, bigint)"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS ledger_post_entries(text[], jsonb, int[], bigint[], bigint[], text[], timestamptz)"
        )
