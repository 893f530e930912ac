// Command validate loads a compose file through compose-go, the loader of Docker Compose itself:
// schema validation, interpolation (a `${VAR:?message}` that is unset fails here, as in
// `docker compose`), merging of anchors, and consistency checks (depends_on targets, volumes).
// It prints the resolved project as JSON, or one error line and exits 1. No Docker engine needed.
//
//	go run ./compose/validate -env-file versions.env docker-compose.yml
//	go run ./compose/validate -env-file versions.env -profile clickhouse-cluster \
//	    docker-compose.yml compose/clickhouse-cluster.yml
//
// Several files merge like several `docker compose -f`; paths are relative to the first file's folder.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type envFiles []string

func (e *envFiles) String() string     { return strings.Join(*e, ",") }
func (e *envFiles) Set(v string) error { *e = append(*e, v); return nil }

func main() {
	var files, profiles envFiles
	flag.Var(&files, "env-file", "env file for interpolation (repeatable), like `docker compose --env-file`")
	flag.Var(&profiles, "profile", "profile to enable (repeatable), like `docker compose --profile`")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: validate [-env-file FILE]... [-profile NAME]... COMPOSE_FILE...")
		os.Exit(2)
	}
	var paths []string
	for _, arg := range flag.Args() {
		path, err := filepath.Abs(arg)
		if err != nil {
			fail(err)
		}
		paths = append(paths, path)
	}
	opts, err := cli.NewProjectOptions(
		paths,
		cli.WithWorkingDirectory(filepath.Dir(paths[0])),
		cli.WithEnvFiles(files...),
		cli.WithProfiles(profiles),
		cli.WithDotEnv,
		// The services' own env_file entries (secrets) are not read: only the file is validated.
		cli.WithoutEnvironmentResolution,
		cli.WithConsistency(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error: "+strings.Join(strings.Fields(err.Error()), " "))
	os.Exit(1)
}
