// The prometheus plugin's series store (plugins/prometheus_metrics): the text
// it renders, per-worker shards merged on a scrape, and its bound.
#include "plugins/prometheus_metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace pm = holdfast::plugins::prometheus;

namespace {

pm::Observation req(int status, std::string_view route, double ms, double upstream_ms = -1) {
  pm::Observation o;
  o.status = status;
  o.route = route;
  o.matched_uri = "/hello";
  o.node = "127.0.0.1";
  o.latency_ms = ms;
  o.upstream_ms = upstream_ms;
  o.ingress = 100;
  o.egress = 250;
  return o;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace

TEST(PrometheusMetrics, ShardsAreMergedOnScrape) {
  pm::init(2, {});
  pm::observe(0, req(200, "r1", 3, 2));
  pm::observe(1, req(200, "r1", 7, 5));
  pm::observe(1, req(502, "r1", 30));
  std::string t = pm::render_http();
  EXPECT_TRUE(has_line(t, "apisix_http_status{code=\"200\",route=\"r1\",matched_uri=\"/hello\",matched_host=\"\","
                          "service=\"\",consumer=\"\",node=\"127.0.0.1\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "apisix_http_status{code=\"502\",route=\"r1\",matched_uri=\"/hello\",matched_host=\"\","
                          "service=\"\",consumer=\"\",node=\"127.0.0.1\"} 1")) << t;
  // Three requests; two had an upstream answer.
  EXPECT_TRUE(has_line(t, "apisix_http_latency_count{type=\"request\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"} 3"));
  EXPECT_TRUE(has_line(t, "apisix_http_latency_count{type=\"upstream\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"} 2"));
  // apisix latency = total - upstream: 1 + 2 + 30.
  EXPECT_TRUE(has_line(t, "apisix_http_latency_sum{type=\"apisix\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"} 33"));
  EXPECT_TRUE(has_line(t, "apisix_bandwidth{type=\"ingress\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"} 300"));
  EXPECT_TRUE(has_line(t, "apisix_bandwidth{type=\"egress\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"} 750"));
}

TEST(PrometheusMetrics, BucketsAreCumulativeWithApisixLabels) {
  pm::init(1, {});
  pm::observe(0, req(200, "r1", 3));   // <= 5
  pm::observe(0, req(200, "r1", 5));   // <= 5 (a bound is inclusive)
  pm::observe(0, req(200, "r1", 90000));  // above 60 s: +Inf only
  std::string t = pm::render_http();
  const std::string labels = "type=\"request\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\"";
  EXPECT_TRUE(has_line(t, "apisix_http_latency_bucket{" + labels + ",le=\"00002.0\"} 0")) << t;
  EXPECT_TRUE(has_line(t, "apisix_http_latency_bucket{" + labels + ",le=\"00005.0\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "apisix_http_latency_bucket{" + labels + ",le=\"60000.0\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "apisix_http_latency_bucket{" + labels + ",le=\"+Inf\"} 3")) << t;
}

TEST(PrometheusMetrics, CustomBucketsAndPrefix) {
  pm::Settings s;
  s.prefix = "edge_";
  s.buckets = {0.5, 250};
  pm::init(1, s);
  pm::observe(0, req(200, "r1", 0.25));
  std::string t = pm::render_http();
  EXPECT_NE(t.find("edge_http_latency_bucket{type=\"request\",route=\"r1\",service=\"\",consumer=\"\",node=\"127.0.0.1\",le=\"000.5\"} 1"),
            std::string::npos) << t;
  EXPECT_NE(t.find("le=\"250.0\"} 1"), std::string::npos) << t;
  EXPECT_EQ(t.find("apisix_"), std::string::npos);
}

TEST(PrometheusMetrics, SeriesAreBoundedAndDropsCounted) {
  pm::Settings s;
  s.max_series_per_worker = 4;
  pm::init(1, s);
  for (int code = 200; code < 210; ++code) pm::observe(0, req(code, "r1", 1));
  std::string t = pm::render_http();
  size_t series = 0;
  for (size_t at = t.find("\napisix_http_status{"); at != std::string::npos; at = t.find("\napisix_http_status{", at + 1))
    ++series;
  EXPECT_EQ(series, 3u) << t;  // one base series + three status series fill the four
  EXPECT_EQ(pm::dropped_series(), 7u);
}

TEST(PrometheusMetrics, LabelValuesAreEscaped) {
  EXPECT_EQ(pm::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(pm::escape_label(std::string("x\ry\0z\x7f", 6)), "x%0Dy%00z%7F");
  pm::init(1, {});
  pm::Observation o = req(200, "r1", 1);
  std::string uri("/a\"\0b", 5);
  o.matched_uri = uri;
  pm::observe(0, o);
  std::string t = pm::render_http();
  EXPECT_NE(t.find("matched_uri=\"/a\\\"%00b\""), std::string::npos) << t;
  for (char c : t) EXPECT_TRUE(c == '\n' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
}

TEST(PrometheusMetrics, NodeSeries) {
  pm::init(1, {});
  pm::NodeStats n;
  n.active = 3;
  n.writing = 1;
  n.waiting = 2;
  n.accepted = n.handled = 10;
  n.requests = 42;
  n.etcd_reachable = 1;
  n.hostname = "gw-1";
  n.version = "0.1.0";
  n.upstreams.push_back({"/apisix/upstreams/1", "10.0.0.1", 8080, false});
  n.dicts.push_back({"plugin-limit-count", 1000, 400});
  std::string t = pm::render_node(n);
  EXPECT_TRUE(has_line(t, "apisix_nginx_http_current_connections{state=\"active\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "apisix_http_requests_total 42"));
  EXPECT_TRUE(has_line(t, "apisix_etcd_reachable 1"));
  EXPECT_TRUE(has_line(t, "apisix_node_info{hostname=\"gw-1\",version=\"0.1.0\"} 1"));
  EXPECT_TRUE(has_line(t, "apisix_upstream_status{name=\"/apisix/upstreams/1\",ip=\"10.0.0.1\",port=\"8080\"} 0"));
  EXPECT_TRUE(has_line(t, "apisix_shared_dict_free_space_bytes{name=\"plugin-limit-count\"} 400"));
  n.etcd_reachable = -1;  // not configured from etcd: no series, as APISIX
  EXPECT_EQ(pm::render_node(n).find("etcd_reachable"), std::string::npos);
}
