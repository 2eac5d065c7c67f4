package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgeagent/edgeagent/agent/api"
	"github.com/edgeagent/edgeagent/agent/config"
)

// runHealth asks a running agent's /readyz and prints each check with ✓ or ✗.
// Exit status: 0 when ready; 1 when not ready or the agent cannot be asked.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", "health [--url URL] [--config FILE] [--timeout 5s]", stderr)
	rawURL := fs.String("url", "", "agent base URL (http://127.0.0.1:8080); default from the config's http.listen")
	cfgPath := fs.String("config", "/etc/edgeagent/edgeagent.yaml", "config file to take the URL and API token from")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base, token := *rawURL, ""
	if base == "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return &exitError{1, fmt.Errorf("health: no --url and %w", err)}
		}
		if base, err = baseURL(cfg.HTTP.Listen); err != nil {
			return &exitError{1, fmt.Errorf("health: %w", err)}
		}
		if token, err = readSecret(cfg.HTTP.TokenFile, "http.token_file"); err != nil {
			return &exitError{1, fmt.Errorf("health: %w", err)}
		}
	}
	st, err := fetchReady(ctx, strings.TrimSuffix(base, "/")+"/readyz", token, *timeout)
	if err != nil {
		fmt.Fprintf(stdout, "✗ agent: %v\n", err)
		return &exitError{1, errors.New("health: agent not reachable")}
	}
	printReady(stdout, st)
	if !st.Ready {
		return &exitError{1, fmt.Errorf("health: not ready: %s", strings.Join(st.Failed, ", "))}
	}
	return nil
}

// baseURL turns http.listen into a URL a local client can dial: a wildcard
// host becomes loopback.
func baseURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("http.listen is empty (HTTP off); pass --url")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func fetchReady(ctx context.Context, url, token string, timeout time.Duration) (api.ReadyStatus, error) {
	var st api.ReadyStatus
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return st, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil || st.Checks == nil {
		return st, fmt.Errorf("GET %s: not a readiness report: %.80q", url, body)
	}
	return st, nil
}

func printReady(w io.Writer, st api.ReadyStatus) {
	names := make([]string, 0, len(st.Checks))
	for n := range st.Checks {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if v := st.Checks[n]; v == "ok" {
			fmt.Fprintf(w, "✓ %s\n", n)
		} else {
			fmt.Fprintf(w, "✗ %s: %s\n", n, v)
		}
	}
	if st.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintf(w, "not ready: %d of %d checks failed\n", len(st.Failed), len(st.Checks))
	}
}
