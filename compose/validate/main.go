// Command validate loads a compose file through compose-go, the loader of Docker Compose itself:
// schema validation, interpolation (a `${VAR:?message}` that is unset fails here, as in
// `docker compose`), merging of anchors, and consistency checks (depends_on targets, volumes).
// It prints the resolved project as JSON, or one error line and exits 1. No Docker engine needed.
//
//	go run ./compose/validate -env-file versions.env docker-compose.yml
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
	var files envFiles
	flag.Var(&files, "env-file", "env file for interpolation (repeatable), like `docker compose --env-file`")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: validate [-env-file FILE]... COMPOSE_FILE")
		os.Exit(2)
	}
	path, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithEnvFiles(files...),
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
