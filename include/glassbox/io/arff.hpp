#pragma once
// Tabular data in Weka's ARFF format (the UCI sets as Weka ships them), and
// its encoding as model input.
//
//   const io::Table credit = io::read_arff("data/german-credit/credit-g.arff");
//   io::TableEncoder encoder(credit, {"class"});          // every other column is a feature
//   const Tensor<float> x = encoder.features<float>(credit);   // one-hot nominals, standardised numbers
//
// ARFF: '%' comments; @relation; one @attribute per column, numeric
// (numeric, real, integer) or nominal ({a, 'b c', ...}); @data, then one row
// per line, values separated by commas, quoted with ' or " when they hold
// spaces or commas, '?' when missing (read as NaN). String, date, relational
// attributes and sparse rows ({...}) are refused with an error naming the
// line. Keywords are case-insensitive.

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox::io {

struct Column {
  std::string name;
  std::vector<std::string> values;  // a nominal column's values; empty for a numeric one
  bool nominal() const { return !values.empty(); }
};

struct Table {
  std::string relation;
  std::vector<Column> columns;
  // rows[r][c]: a number, or the index of a nominal value; NaN when missing.
  std::vector<std::vector<double>> rows;

  std::size_t column(const std::string& name) const {
    for (std::size_t c = 0; c < columns.size(); ++c)
      if (columns[c].name == name) return c;
    throw Error(fmt::format("Table '{}': no column '{}'", relation, name));
  }
  // The nominal value of row r, column c ("?" when missing).
  const std::string& text(std::size_t r, std::size_t c) const {
    static const std::string missing = "?";
    const double v = rows.at(r).at(c);
    if (!columns.at(c).nominal()) throw Error(fmt::format("Table: column '{}' is numeric", columns[c].name));
    return std::isnan(v) ? missing : columns[c].values[static_cast<std::size_t>(v)];
  }
};

namespace detail {
// Splits an ARFF line into values: commas outside quotes separate; quotes
// and backslash escapes are removed; blanks around values are dropped.
inline std::vector<std::string> arff_values(const std::string& line, const std::string& where) {
  std::vector<std::string> values;
  std::size_t i = 0;
  const auto blank = [&](std::size_t at) {
    return at < line.size() && std::isspace(static_cast<unsigned char>(line[at]));
  };
  while (true) {
    while (blank(i)) ++i;
    std::string value;
    if (i < line.size() && (line[i] == '\'' || line[i] == '"')) {
      const char quote = line[i++];
      while (i < line.size() && line[i] != quote) {
        if (line[i] == '\\' && i + 1 < line.size()) ++i;
        value += line[i++];
      }
      if (i >= line.size()) throw Error(fmt::format("{}: an unclosed quote", where));
      ++i;
      while (blank(i)) ++i;
    } else {
      while (i < line.size() && line[i] != ',') value += line[i++];
      while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
    }
    values.push_back(value);
    if (i >= line.size()) return values;
    if (line[i] != ',') throw Error(fmt::format("{}: a comma expected after '{}'", where, value));
    ++i;
  }
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace detail

// Reads an ARFF file; every error names the file and line.
inline Table read_arff(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(fmt::format("read_arff: cannot open '{}'", path));
  std::string text;
  char buffer[65536];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) {
    text.append(buffer, n);
    if (text.size() > (std::size_t{1} << 30)) {
      std::fclose(f);
      throw Error(fmt::format("read_arff: '{}' is larger than 1 GiB", path));
    }
  }
  std::fclose(f);

  Table table;
  bool in_data = false;
  std::size_t line_number = 0;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    const std::string where = fmt::format("{}:{}", path, line_number);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '%') continue;
    line = line.substr(first);
    if (!in_data) {
      const std::string keyword = detail::lower(line.substr(0, line.find_first_of(" \t")));
      std::string rest = line.size() > keyword.size() ? line.substr(keyword.size()) : "";
      rest = rest.substr(std::min(rest.size(), rest.find_first_not_of(" \t")));
      if (keyword == "@relation") {
        table.relation = detail::arff_values(rest, where).front();
      } else if (keyword == "@attribute") {
        Column column;
        std::size_t type_at = 0;
        if (!rest.empty() && (rest[0] == '\'' || rest[0] == '"')) {
          const std::size_t close = rest.find(rest[0], 1);
          if (close == std::string::npos) throw Error(fmt::format("{}: an unclosed quote", where));
          column.name = rest.substr(1, close - 1);
          type_at = close + 1;
        } else {
          type_at = std::min(rest.size(), rest.find_first_of(" \t{"));
          column.name = rest.substr(0, type_at);
        }
        std::string type = rest.substr(type_at);
        type = type.substr(std::min(type.size(), type.find_first_not_of(" \t")));
        if (column.name.empty()) throw Error(fmt::format("{}: an attribute without a name", where));
        if (!type.empty() && type[0] == '{') {
          const std::size_t close = type.rfind('}');
          if (close == std::string::npos) throw Error(fmt::format("{}: '{}' has no closing brace", where, column.name));
          column.values = detail::arff_values(type.substr(1, close - 1), where);
          if (column.values.empty() || (column.values.size() == 1 && column.values[0].empty()))
            throw Error(fmt::format("{}: nominal attribute '{}' has no values", where, column.name));
        } else {
          const std::string kind = detail::lower(type.substr(0, type.find_first_of(" \t")));
          if (kind != "numeric" && kind != "real" && kind != "integer")
            throw Error(fmt::format("{}: attribute '{}' of type '{}' is not supported (numeric or nominal only)", where,
                                    column.name, kind));
        }
        table.columns.push_back(std::move(column));
      } else if (keyword == "@data") {
        if (table.columns.empty()) throw Error(fmt::format("{}: @data before any @attribute", where));
        in_data = true;
      } else {
        throw Error(
            fmt::format("{}: '{}' where a header line (@relation, @attribute, @data) was expected", where, keyword));
      }
      continue;
    }
    if (line[0] == '{') throw Error(fmt::format("{}: sparse rows are not supported", where));
    const std::vector<std::string> values = detail::arff_values(line, where);
    if (values.size() != table.columns.size())
      throw Error(
          fmt::format("{}: {} values, the header declares {} attributes", where, values.size(), table.columns.size()));
    std::vector<double> row(values.size());
    for (std::size_t c = 0; c < values.size(); ++c) {
      const Column& column = table.columns[c];
      if (values[c] == "?") {
        row[c] = std::numeric_limits<double>::quiet_NaN();
      } else if (column.nominal()) {
        std::size_t k = 0;
        while (k < column.values.size() && column.values[k] != values[c]) ++k;
        if (k == column.values.size())
          throw Error(fmt::format("{}: '{}' is not a value of attribute '{}'", where, values[c], column.name));
        row[c] = static_cast<double>(k);
      } else {
        char* stop = nullptr;
        row[c] = std::strtod(values[c].c_str(), &stop);
        if (values[c].empty() || *stop != '\0' || !std::isfinite(row[c]))
          throw Error(fmt::format("{}: '{}' is not a number (attribute '{}')", where, values[c], column.name));
      }
    }
    table.rows.push_back(std::move(row));
  }
  if (!in_data) throw Error(fmt::format("read_arff: '{}' has no @data section", path));
  return table;
}

// Model input from a table: each numeric column standardised (the mean and
// standard deviation of the rows it was built from; missing values become
// 0, the mean), each nominal column one-hot (a missing value: all zeros).
// groups() tells which input columns each table column became, for
// permutation importance of the original columns.
class TableEncoder {
 public:
  TableEncoder(const Table& table, const std::vector<std::string>& excluded,
               const std::vector<std::size_t>& rows = {}) {
    for (std::size_t c = 0; c < table.columns.size(); ++c) {
      const Column& column = table.columns[c];
      bool skip = false;
      for (const std::string& e : excluded) skip = skip || e == column.name;
      if (skip) continue;
      Source source{c, 0, 1, {}};
      if (column.nominal()) {
        for (const std::string& v : column.values) {
          source.inputs.push_back(width_++);
          names_.push_back(column.name + "=" + v);
        }
      } else {
        double sum = 0, squares = 0, count = 0;
        auto visit = [&](std::size_t r) {
          const double v = table.rows[r][c];
          if (std::isnan(v)) return;
          sum += v;
          squares += v * v;
          ++count;
        };
        if (rows.empty())
          for (std::size_t r = 0; r < table.rows.size(); ++r) visit(r);
        else
          for (const std::size_t r : rows) visit(r);
        source.mean = count > 0 ? sum / count : 0;
        const double variance = count > 0 ? squares / count - source.mean * source.mean : 0;
        source.scale = variance > 0 ? std::sqrt(variance) : 1;
        source.inputs.push_back(width_++);
        names_.push_back(column.name);
      }
      columns_.push_back(source);
      column_names_.push_back(column.name);
    }
    for (const std::string& e : excluded) table.column(e);  // an unknown name is an error
  }

  index_t width() const { return width_; }
  const std::vector<std::string>& input_names() const { return names_; }
  // Per encoded table column (in table order, excluded ones left out): its name and input columns.
  const std::vector<std::string>& column_names() const { return column_names_; }
  std::vector<std::vector<index_t>> groups() const {
    std::vector<std::vector<index_t>> g;
    for (const Source& s : columns_) g.push_back(s.inputs);
    return g;
  }

  // (rows, width()); all rows when `rows` is empty.
  template <class T>
  Tensor<T> features(const Table& table, const std::vector<std::size_t>& rows = {}) const {
    const std::size_t n = rows.empty() ? table.rows.size() : rows.size();
    Tensor<T> x(Shape{static_cast<index_t>(n), width_}, T(0));
    for (std::size_t i = 0; i < n; ++i) {
      const std::vector<double>& row = table.rows.at(rows.empty() ? i : rows[i]);
      T* out = x.data() + static_cast<index_t>(i) * width_;
      for (const Source& s : columns_) {
        const double v = row[s.column];
        if (table.columns[s.column].nominal()) {
          if (!std::isnan(v)) out[s.inputs[static_cast<std::size_t>(v)]] = T(1);
        } else {
          out[s.inputs[0]] = std::isnan(v) ? T(0) : static_cast<T>((v - s.mean) / s.scale);
        }
      }
    }
    return x;
  }

 private:
  struct Source {
    std::size_t column;
    double mean, scale;
    std::vector<index_t> inputs;
  };
  std::vector<Source> columns_;
  std::vector<std::string> names_, column_names_;
  index_t width_ = 0;
};

}  // namespace glassbox::io
