package pgdb

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Login is one service's database login: a role that owns the service's schema and may use
// nothing else in the database, so that one compromised service reads no other's data (the
// users' password hashes and signing keys, the orders).
type Login struct {
	Role     string // the role the service logs in as
	Schema   string // the schema it owns
	Password string
}

// Bootstrap makes each login on the database conn is connected to, as its owner (RDS's master
// user): the role with its password; its schema, created if missing, owned by it with every
// table, sequence and view already in it (a stack whose services used the master user until now
// keeps its data); nothing for anyone in the public schema. It can run again: a role or schema
// that exists is brought to the same state, with the password given. Roles are the server's,
// not the database's: the names should say whose they are.
func Bootstrap(ctx context.Context, conn *pgx.Conn, logins []Login) error {
	var database string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	db := pgx.Identifier{database}.Sanitize()
	for _, sql := range []string{
		// Nobody creates objects outside their own schema; connecting is granted per login.
		`REVOKE ALL ON SCHEMA public FROM PUBLIC`,
		`REVOKE CREATE, TEMPORARY, CONNECT ON DATABASE ` + db + ` FROM PUBLIC`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("bootstrap: %s: %w", sql, err)
		}
	}
	for _, l := range logins {
		if !schemaName.MatchString(l.Schema) || !schemaName.MatchString(l.Role) {
			return fmt.Errorf("bootstrap: role %q and schema %q: use lower-case letters, digits and underscores", l.Role, l.Schema)
		}
		if l.Password == "" {
			return fmt.Errorf("bootstrap: role %s: no password", l.Role)
		}
		role, schema := pgx.Identifier{l.Role}.Sanitize(), pgx.Identifier{l.Schema}.Sanitize()
		password := "'" + strings.ReplaceAll(l.Password, "'", "''") + "'"
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, sql := range []string{
				`DO $$ BEGIN CREATE ROLE ` + role + `; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
				// Created with PostgreSQL's defaults (no superuser, createdb, createrole or
				// bypassrls); RDS's master user, not a superuser, may not even name those.
				`ALTER ROLE ` + role + ` WITH LOGIN PASSWORD ` + password,
				`GRANT CONNECT ON DATABASE ` + db + ` TO ` + role,
				// The owner may grant a role to itself only when it is a member: RDS's master
				// user is not a superuser, and ALTER … OWNER TO needs membership in the new owner.
				`GRANT ` + role + ` TO CURRENT_USER`,
				`CREATE SCHEMA IF NOT EXISTS ` + schema + ` AUTHORIZATION ` + role,
				`ALTER SCHEMA ` + schema + ` OWNER TO ` + role,
			} {
				if _, err := tx.Exec(ctx, sql); err != nil {
					return fmt.Errorf("%s: %w", strings.SplitN(sql, " PASSWORD", 2)[0], err)
				}
			}
			rows, err := tx.Query(ctx, `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S', 'v', 'm') AND pg_get_userbyid(c.relowner) <> $2`, l.Schema, l.Role)
			if err != nil {
				return err
			}
			type object struct{ name, kind string }
			var objects []object
			for rows.Next() {
				var o object
				if err := rows.Scan(&o.name, &o.kind); err != nil {
					return err
				}
				objects = append(objects, o)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, o := range objects {
				kind := map[string]string{"r": "TABLE", "p": "TABLE", "S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW"}[o.kind]
				if _, err := tx.Exec(ctx, `ALTER `+kind+` `+schema+`.`+pgx.Identifier{o.name}.Sanitize()+` OWNER TO `+role); err != nil {
					return fmt.Errorf("hand %s.%s to %s: %w", l.Schema, o.name, l.Role, err)
				}
			}
			// The owner keeps no membership: it would act as the service without logging in.
			_, err = tx.Exec(ctx, `REVOKE `+role+` FROM CURRENT_USER`)
			return err
		})
		if err != nil {
			return fmt.Errorf("bootstrap login %s: %w", l.Role, err)
		}
	}
	return nil
}
