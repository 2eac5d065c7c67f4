package api

import "embed"

// webFS is the web view: plain HTML, CSS and JavaScript, no build step, no
// external network (every asset is served from here).
//
//go:embed web
var webFS embed.FS
