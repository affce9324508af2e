"""Sign-in on a shared PostgreSQL database, done by the database itself, so a workstation's login never needs
to read password hashes or write the account table.

The console's PostgreSQL role (engine.dbroles) may not read `operator.password_hash` nor change any account.
Signing in still works: the client asks for the hash's parameters and salt (`watchkeeper_password_salt`),
computes the salted scrypt itself, and hands only the digest to `watchkeeper_sign_in`, which compares it with
the stored one and keeps the failed-sign-in count, the lock-out and the last sign-in time. Changing one's own
password goes through `watchkeeper_change_password`, which checks the old digest first. The functions run with
their owner's rights (SECURITY DEFINER) and do nothing else, so a console role can neither harvest hashes to
guess offline nor set another person's password or role.

The rules are the ones engine.accounts applies on SQLite (5 failures lock an account for 15 minutes; a
lock-out that has ended starts the count again), and the tests run both. The time comes from the caller's clock
(the engine's injected clock) but never later than the database's own clock plus a minute, so a client cannot
move a lock-out's end forward. The same statements are in the migration that first created them.
"""

from __future__ import annotations

MAX_FAILED_SIGN_INS = 5
LOCK_MINUTES = 15
MIN_SCRYPT_N = 2**14

FUNCTIONS: tuple[str, ...] = (
    """
CREATE OR REPLACE FUNCTION watchkeeper_password_salt(p_username text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  v_hash text;
BEGIN
  SELECT password_hash INTO v_hash FROM operator WHERE username = p_username;
  IF v_hash IS NULL OR array_length(string_to_array(v_hash, '$'), 1) <> 6 THEN
    RETURN NULL;
  END IF;
  RETURN array_to_string((string_to_array(v_hash, '$'))[1:5], '$');
END
$fn$
""",
    f"""
CREATE OR REPLACE FUNCTION watchkeeper_sign_in(p_username text, p_digest text, p_now timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  v_now timestamptz := LEAST(p_now, now() + interval '1 minute');
  v_row record;
  v_failed integer;
BEGIN
  SELECT id, password_hash, active, failed_sign_ins, locked_until INTO v_row
    FROM operator WHERE username = p_username FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 'unknown';
  END IF;
  IF v_row.locked_until IS NOT NULL AND v_row.locked_until > v_now THEN
    RETURN 'locked';
  END IF;
  IF NOT v_row.active THEN
    RETURN 'disabled';
  END IF;
  IF p_digest <> '' AND p_digest = split_part(v_row.password_hash, '$', 6) THEN
    UPDATE operator SET failed_sign_ins = 0, locked_until = NULL, last_login_at = v_now WHERE id = v_row.id;
    RETURN 'ok';
  END IF;
  v_failed := CASE WHEN v_row.locked_until IS NOT NULL THEN 0 ELSE v_row.failed_sign_ins END + 1;
  IF v_failed >= {MAX_FAILED_SIGN_INS} THEN
    UPDATE operator SET failed_sign_ins = v_failed, locked_until = v_now + interval '{LOCK_MINUTES} minutes'
      WHERE id = v_row.id;
    RETURN 'locked_now';
  END IF;
  UPDATE operator SET failed_sign_ins = v_failed, locked_until = NULL WHERE id = v_row.id;
  RETURN 'wrong';
END
$fn$
""",
    f"""
CREATE OR REPLACE FUNCTION watchkeeper_change_password(
  p_username text, p_old_digest text, p_new_hash text, p_now timestamptz
) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  v_now timestamptz := LEAST(p_now, now() + interval '1 minute');
  v_row record;
BEGIN
  SELECT id, password_hash, active, locked_until INTO v_row
    FROM operator WHERE username = p_username FOR UPDATE;
  IF NOT FOUND OR NOT v_row.active THEN
    RETURN 'wrong';
  END IF;
  IF v_row.locked_until IS NOT NULL AND v_row.locked_until > v_now THEN
    RETURN 'locked';
  END IF;
  IF p_old_digest = '' OR p_old_digest <> split_part(v_row.password_hash, '$', 6) THEN
    RETURN 'wrong';
  END IF;
  IF p_new_hash !~ '^scrypt[$][0-9]+[$][0-9]+[$][0-9]+[$][0-9a-f]{{32,}}[$][0-9a-f]{{64,}}$'
     OR split_part(p_new_hash, '$', 2)::bigint < {MIN_SCRYPT_N} THEN
    RETURN 'invalid';
  END IF;
  UPDATE operator
     SET password_hash = p_new_hash, must_change_password = false, password_changed_at = v_now,
         failed_sign_ins = 0, locked_until = NULL
   WHERE id = v_row.id;
  RETURN 'ok';
END
$fn$
""",
)

FUNCTION_SIGNATURES: tuple[str, ...] = (
    "watchkeeper_password_salt(text)",
    "watchkeeper_sign_in(text, text, timestamptz)",
    "watchkeeper_change_password(text, text, text, timestamptz)",
)
