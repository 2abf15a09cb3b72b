package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// scraper GETs a /metrics URL every interval while it is on, as
// Prometheus would (one keep-alive connection, gzip, never two scrapes at
// once), and records each scrape: a failed one is counted, never fatal.
// A scrape that outlasts the interval is followed by the next at once;
// its timeout is 10 s, where Prometheus's cannot exceed the interval, so
// that a slow scrape is measured rather than cut off. Off, it ticks
// without scraping.
type scraper struct {
	url    string
	client *http.Client

	// mu is held for the whole of a scrape, so that turning the scraper
	// off waits for the one in flight: the next run starts without it.
	mu    sync.Mutex
	on    bool
	gets  []time.Duration // successful scrapes: request to body read
	spans [][2]time.Time  // every scrape, failed or not: start and end
	fails int
	err   error // the last failure
}

// startScraper scrapes url every interval, when on, until ctx ends.
func startScraper(ctx context.Context, url string, interval time.Duration) *scraper {
	s := &scraper{url: url, client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.mu.Lock()
			if s.on {
				s.scrape()
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// set turns scraping on or off; off returns once no scrape is in flight.
// A nil scraper stays off.
func (s *scraper) set(on bool) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.on = on
	s.mu.Unlock()
}

// scrape GETs the URL once; s.mu is held.
func (s *scraper) scrape() {
	start := time.Now()
	err := func() error {
		resp, err := s.client.Get(s.url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", s.url, resp.Status)
		}
		return nil
	}()
	end := time.Now()
	s.spans = append(s.spans, [2]time.Time{start, end})
	if err != nil {
		s.fails++
		s.err = err
		return
	}
	s.gets = append(s.gets, end.Sub(start))
}

// stats turns the scraper off and returns its successful scrapes' times
// (sorted), its failures and the last failure's error.
func (s *scraper) stats() (gets []time.Duration, fails int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	gets = slices.Sorted(slices.Values(s.gets))
	return gets, s.fails, s.err
}

// overlaps reports whether a scrape was in flight at some moment of
// [from, to].
func (s *scraper) overlaps(from, to time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.spans {
		if sp[0].Before(to) && sp[1].After(from) {
			return true
		}
	}
	return false
}
