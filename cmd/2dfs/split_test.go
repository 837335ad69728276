package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/split/splittest"
)

func TestSplitPrintsStageTags(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(4, 8), 2); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := runSplit(context.Background(), splitFlags{out: filepath.Join(dir, "field"), stages: 2, cols: 3, root: "/model"}, src, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2 stages × 3 columns",
		"stage 0  layers 0-1", "pull TAG--0.0.0.2--2.0.2.0",
		"stage 1  layers 2-3", "pull TAG--1.0.1.2--2.0.2.0",
		"row 2    other files: config.json, tokenizer, tokenizer.json",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	err = runSplit(context.Background(), splitFlags{out: filepath.Join(dir, "f2"), cols: 0}, src, &out)
	if err == nil || !strings.Contains(err.Error(), "--cols 0") {
		t.Fatalf("err = %v", err)
	}
}
