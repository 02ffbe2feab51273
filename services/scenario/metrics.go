package scenario

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	raw    string // the label set as written, for substring matches
	value  float64
}

type metrics []sample

func (m metrics) find(name string) []sample {
	var out []sample
	for _, s := range m {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// sum adds the samples of name whose label set contains match.
func (m metrics) sum(name, match string) float64 {
	var total float64
	for _, s := range m.find(name) {
		if strings.Contains(s.raw, match) {
			total += s.value
		}
	}
	return total
}

// scrape reads a workload's metrics from its plain port.
func scrape(ctx context.Context, w Workload) (metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.Health+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s metrics at %s (its HEALTH_ADDR): %w", w.Name, w.Health, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s metrics at %s: status %d", w.Name, w.Health, resp.StatusCode)
	}
	return parseMetrics(bufio.NewScanner(resp.Body))
}

// parseMetrics reads the Prometheus text exposition format: name{k="v",…} value.
func parseMetrics(sc *bufio.Scanner) (metrics, error) {
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var out metrics
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			end, err := parseLabels(line[i+1:], s.labels)
			if err != nil {
				return nil, fmt.Errorf("metrics line %q: %w", line, err)
			}
			s.raw = line[i : i+2+end]
			rest = line[i+2+end:]
		} else if i >= 0 {
			s.name, rest = line[:i], line[i:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads k="v",… up to the closing brace and returns the brace's offset.
func parseLabels(s string, into map[string]string) (int, error) {
	i := 0
	for i < len(s) {
		if s[i] == '}' {
			return i, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return 0, fmt.Errorf("bad label at %q", s[i:])
		}
		key := strings.TrimLeft(s[i:i+eq], ",")
		j := i + eq + 2
		var val strings.Builder
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return 0, fmt.Errorf("unterminated label value in %q", s)
		}
		into[key] = val.String()
		i = j + 1
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	return 0, fmt.Errorf("no closing brace in %q", s)
}
