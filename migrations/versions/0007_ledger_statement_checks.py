"""Ledger: check entries once per statement instead of once per entry at commit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Migration 0001 checked every entry at commit with a deferred per-row constraint trigger
(at least two postings, zero sum per currency): a trigger call and an index scan per entry,
about as much as the rest of a batched posting's database work. Here a statement-level
trigger checks, set-based, that every entry an INSERT adds has at least two postings by
the end of that statement. Together with 0001's per-statement postings check (each
statement's postings sum to zero per entry and currency, and name an existing entry and an
account in their currency) and append-only postings, every entry keeps at least two
postings summing to zero per currency, in its accounts' currencies.

An entry and its postings must therefore be written by one statement, as both posting
functions do: ``ledger_post_entry`` always did (one INSERT … with data-modifying CTEs), and
``ledger_post_entries`` is replaced here to write its entries, postings and balances in one
statement too. Its key lookups are index probes, one per key (a LATERAL subquery with
LIMIT 1, which the planner cannot turn into a hash join): planned as a join, a batch of
1,000 keys made PostgreSQL scan the whole, ever-growing entries table on every call. The
new body is valid under either set of guards, so the downgrade restores the deferred
trigger and leaves the function as it is.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The postings are counted by a correlated subquery, one probe of the entry_id index per
# new entry: a plan that does not depend on the table's size, planned once per connection.
ENTRIES_CHECKED = r"""
CREATE FUNCTION ledger_entries_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lonely bigint;
BEGIN
    SELECT e.id INTO lonely
      FROM new_entries e
     WHERE (SELECT count(*) FROM ledger_postings p WHERE p.entry_id = e.id) < 2
     LIMIT 1;
    IF lonely IS NOT NULL THEN
        RAISE EXCEPTION 'entry % has fewer than two postings (an entry and its postings are written by one statement)',
            lonely USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""

ENTRIES_CHECKED_TRIGGER = """
CREATE TRIGGER ledger_entries_checked AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_checked()
"""

# Migration 0001's deferred per-entry check, for the downgrade.
ENTRY_BALANCED = r"""
CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    total numeric;
    lowest text;
    highest text;
BEGIN
    SELECT count(*), sum(amount), min(currency), max(currency) INTO n, total, lowest, highest
      FROM ledger_postings WHERE entry_id = NEW.id;
    IF n < 2 THEN
        RAISE EXCEPTION 'entry % has fewer than two postings', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    IF (lowest = highest AND total <> 0) OR (lowest <> highest AND EXISTS (
            SELECT 1 FROM ledger_postings WHERE entry_id = NEW.id GROUP BY currency HAVING sum(amount) <> 0)) THEN
        RAISE EXCEPTION 'entry % does not sum to zero per currency', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""

ENTRY_BALANCED_TRIGGER = """
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced()
"""

# Migration 0002's ledger_post_entries with step 4 as one statement: entries, postings and
# balances together, so that the entries' check sees their postings.
POST_ENTRIES = r"""
CREATE OR REPLACE FUNCTION ledger_post_entries(
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
      FROM unnest(p_keys) WITH ORDINALITY AS k(key, i)
     CROSS JOIN LATERAL (SELECT e.id, e.content FROM ledger_entries e WHERE e.key = k.key LIMIT 1) f;
    IF v_conflict IS NOT NULL THEN
        SELECT e.content INTO detail FROM ledger_entries e WHERE e.key = p_keys[v_conflict];
        status := 'conflict';
        idx := v_conflict;
        RETURN;
    END IF;
    SELECT k.i::int, jsonb_build_object('content', r.content, 'message', r.message) INTO idx, detail
      FROM unnest(p_keys) WITH ORDINALITY AS k(key, i)
     CROSS JOIN LATERAL (SELECT x.content, x.message FROM ledger_rejections x WHERE x.key = k.key LIMIT 1) r
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

    -- 4. writes, in one statement: ids first, so that entries and postings go in together;
    --    a key that a concurrent transaction committed since step 1 fails it (unique key)
    new_ids := ARRAY(SELECT nextval('ledger_entries_id_seq') FROM generate_series(1, cardinality(f_keys)));
    WITH added_entries AS (
        INSERT INTO ledger_entries (id, key, description, metadata, effective_at, created_at, reverses_id, content)
        SELECT e.id, e.key, c.doc->>'description', c.doc->'metadata', (c.doc->>'effective_at')::timestamptz,
               p_now, NULL, c.doc
          FROM unnest(new_ids, f_keys) WITH ORDINALITY AS e(id, key, o)
         CROSS JOIN LATERAL (SELECT p_contents->(coalesce(f_pos[e.o], e.o)::int - 1) AS doc) c
         ORDER BY e.o
    ), added_postings AS (
        INSERT INTO ledger_postings (entry_id, account_id, amount, currency)
        SELECT new_ids[u.i], u.a, u.m, u.c
          FROM unnest(f_entry, f_accounts, f_amounts, f_currencies) WITH ORDINALITY AS u(i, a, m, c, o)
         ORDER BY u.o
    )
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
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER ledger_entries_balanced ON ledger_entries")
    op.execute("DROP FUNCTION ledger_entry_balanced()")
    op.execute(ENTRIES_CHECKED)
    op.execute(ENTRIES_CHECKED_TRIGGER)
    op.execute(POST_ENTRIES)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER ledger_entries_checked ON ledger_entries")
    op.execute("DROP FUNCTION ledger_entries_checked()")
    op.execute(ENTRY_BALANCED)
    op.execute(ENTRY_BALANCED_TRIGGER)
