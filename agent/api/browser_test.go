package api_test

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/edgeagent/edgeagent/agent"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium with a fresh profile; the test is
// skipped when Chromium is not installed (make test installs it) or -short.
// JavaScript exceptions on the page fail the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no %s: run `make deps` (Debian package chromium)", chromiumPath)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // start the browser on this uncancelled context
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	_ = chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			defer mu.Unlock()
			t.Errorf("page exception: %s %v", e.ExceptionDetails.Text, e.ExceptionDetails.Exception)
		}
	})
	return ctx
}

// poll waits up to d for the JavaScript expression to be truthy.
func poll(t *testing.T, ctx context.Context, what, expr string, d time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// artifactDir is where screenshots go: $EDGEAGENT_ARTIFACTS, else a
// directory under the system temp dir that outlives the test.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("EDGEAGENT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "edgeagent-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100) /* png */)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(b))
}

// pageWeight is the bytes of every embedded web asset (what one cold load transfers, uncompressed).
func pageWeight(t *testing.T) int64 {
	var n int64
	err := fs.WalkDir(os.DirFS("web"), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBrowser_page loads the page in headless Chromium against the API with
// a real pipeline fed continuously; it checks the sensor list, the chart, a
// live value change, an anomaly badge, the token from the URL fragment and
// the phone layout.
func TestBrowser_page(t *testing.T) {
	ctx := browser(t)
	f := newFixture(t, "tok-browser")

	// Feed three sensors every 100 ms until the test ends.
	fctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			for j, s := range []string{"boiler-1/temperature", "boiler-2/temperature", "pump-1/power"} {
				v := 50 + 10*math.Sin(float64(i+j*7)/5)
				m := agent.Message{Topic: "sensors/" + s, Payload: fmt.Appendf(nil, `{"value":%.3f}`, v)}
				if err := f.intake.Ingest(fctx, m); err != nil && fctx.Err() == nil {
					t.Errorf("ingest: %v", err)
				}
			}
		}
	})

	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(f.srv.URL+"/#token=tok-browser")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "sensor list", `document.querySelector('#sensors li[data-sensor="boiler-1"]')`, 10*time.Second)
	poll(t, ctx, "chart drawn with points", `+document.getElementById('chart').dataset.points > 0`, 10*time.Second)
	poll(t, ctx, "live stream", `window.__edge.firstLive != null`, 10*time.Second)
	firstData := eval[float64](t, ctx, `window.__edge.firstData`)
	firstLive := eval[float64](t, ctx, `window.__edge.firstLive`)
	t.Logf("page weight %d bytes (uncompressed, 3 files); time to first data %.0f ms, to first live reading %.0f ms (navigation to list: %v)",
		pageWeight(t), firstData, firstLive, time.Since(start).Round(time.Millisecond))

	// The fragment's token is kept and removed from the address bar.
	if got := eval[string](t, ctx, `localStorage.getItem("edgeagent.token")`); got != "tok-browser" {
		t.Fatalf("stored token %q", got)
	}
	if h := eval[string](t, ctx, `location.hash`); h != "" {
		t.Fatalf("token left in the URL: %q", h)
	}

	// A live value changes.
	before := eval[string](t, ctx, `document.querySelector('li[data-sensor="boiler-2"] .val').dataset.value`)
	poll(t, ctx, "boiler-2 value to change", fmt.Sprintf(`document.querySelector('li[data-sensor="boiler-2"] .val').dataset.value !== %q`, before), 10*time.Second)

	// An injected anomaly shows its badge and its alert in the panel.
	poll(t, ctx, "no badge yet", `document.querySelector('li[data-sensor="boiler-1"] .badge').hidden`, time.Second)
	if err := f.intake.Ingest(context.Background(), agent.Message{Topic: "sensors/boiler-1/temperature", Payload: []byte(`{"value":180}`)}); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "anomaly badge", `!document.querySelector('li[data-sensor="boiler-1"] .badge').hidden`, 10*time.Second)
	poll(t, ctx, "alert in the panel", `document.querySelector('#alerts li[data-alert="alert-boiler-1"]')`, 10*time.Second)
	poll(t, ctx, "live points on the chart", `+document.getElementById('chart').dataset.points > 10`, 10*time.Second)
	screenshot(t, ctx, "webview-desktop.png")
	// Switch ranges: 6 h comes from rollups.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('button[data-range="6h"]').click()`)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "rollup chart", `document.getElementById('chart-info').textContent.includes('rollups')`, 10*time.Second)

	// Phone: one column, nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "phone layout", `document.documentElement.scrollWidth <= window.innerWidth && document.getElementById('chart').clientWidth > 300`, 5*time.Second)
	screenshot(t, ctx, "webview-phone.png")

	// A wrong stored token brings the form back.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`localStorage.setItem("edgeagent.token","nope")`), chromedp.Navigate(f.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "token form", `!document.getElementById('login').hidden`, 10*time.Second)
}
