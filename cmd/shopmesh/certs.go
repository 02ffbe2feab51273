package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/shopmesh/shopmesh/services/localshop"
	"github.com/shopmesh/shopmesh/services/pki"
)

// DefaultPKIDir is where make run keeps the local CA and certificates (git-ignored).
const DefaultPKIDir = localshop.DefaultPKIDir

const certsUsage = `usage:
  shopmesh certs init  [--dir DIR] [--ttl 8760h] [--force]          create the platform CA
  shopmesh certs issue --service NAME [--namespace shop] [--ttl 24h] [--dir DIR]
                                                                     issue a workload certificate
  shopmesh certs show  FILE...                                       print certificates`

// runCerts manages the platform CA and workload certificates.
func runCerts(args []string, stdout io.Writer, now time.Time) error {
	if len(args) == 0 {
		return errors.New(certsUsage)
	}
	fs := flag.NewFlagSet("shopmesh certs "+args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	dir := fs.String("dir", DefaultPKIDir, "directory of the CA and the issued certificates")
	switch args[0] {
	case "init":
		ttl := fs.Duration("ttl", 365*24*time.Hour, "CA lifetime")
		force := fs.Bool("force", false, "replace an existing CA")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ca, err := pki.InitCA(*dir, *ttl, *force, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created the CA in %s\n%s", *dir, pki.Describe(ca.Cert, now))
	case "issue":
		svc := fs.String("service", "", "workload name (its Kubernetes service account)")
		ns := fs.String("namespace", "shop", "workload namespace")
		ttl := fs.Duration("ttl", 24*time.Hour, "certificate lifetime (keep it short)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *svc == "" {
			return errors.New("certs issue needs --service")
		}
		ca, err := pki.LoadCA(*dir)
		if err != nil {
			return err
		}
		issued, err := ca.Issue(*dir, pki.ID{Namespace: *ns, Service: *svc}, *ttl, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n%s", issued.CertPath, issued.KeyPath, pki.Describe(issued.Cert, now))
	case "show":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			return errors.New("certs show needs at least one certificate file")
		}
		for i, path := range fs.Args() {
			certs, err := pki.LoadCerts(path)
			if err != nil {
				return err
			}
			for j, c := range certs {
				if i+j > 0 {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "%s\n%s", path, pki.Describe(c, now))
			}
		}
	default:
		return fmt.Errorf("unknown certs command %q\n%s", args[0], certsUsage)
	}
	return nil
}
