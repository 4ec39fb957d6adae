// BPE apply for plain text (single spaces between words, "\n" line ends), byte for byte as `subword-nmt apply-bpe`.
// Why hand-written: subword-nmt spends ~2 us of Python per token. Here one pass looks each token up in a cache of cut
// points and encodes a new word with subword_nmt.apply_bpe.encode's loop.
// Called through ctypes (src/bpe.py: _NativeBpe); any text this code does not handle exactly returns a "not handled"
// code, and src/bpe.py gives those lines to subword-nmt itself.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

constexpr uint64_t kEmpty = ~0ull;

uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

// Merge rank and merged symbol of a pair of symbol ids: open addressing (std::unordered_map's nodes cost a cache miss
// a lookup, and encoding a word looks up every adjacent pair each round).
struct PairTable {
  std::vector<uint64_t> keys;
  std::vector<int32_t> ranks;
  uint64_t mask = 0;

  void build(const int32_t *left, const int32_t *right, int64_t count) {
    size_t size = 16;
    while (size < static_cast<size_t>(count) * 4) size <<= 1;
    keys.assign(size, kEmpty);
    ranks.assign(size, -1);
    mask = size - 1;
    for (int64_t r = 0; r < count; ++r) {
      const uint64_t key = static_cast<uint64_t>(left[r]) << 32 | static_cast<uint32_t>(right[r]);
      size_t slot = mix(key) & mask;
      while (keys[slot] != kEmpty && keys[slot] != key) slot = (slot + 1) & mask;
      if (keys[slot] == kEmpty) {  // the first copy of a duplicated merge keeps its rank
        keys[slot] = key;
        ranks[slot] = static_cast<int32_t>(r);
      }
    }
  }

  // rank of (a, b), or INT32_MAX when it is no merge; ids < 0 (characters no merge knows) are in no pair
  int32_t rank(int32_t a, int32_t b) const {
    if (a < 0 || b < 0) return INT32_MAX;
    const uint64_t key = static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b);
    for (size_t slot = mix(key) & mask;; slot = (slot + 1) & mask) {
      if (keys[slot] == key) return ranks[slot];
      if (keys[slot] == kEmpty) return INT32_MAX;
    }
  }
};

// A word's cut points: bit b of `mask` = a subword starts b bytes into the word (words of up to 64 bytes), or
// `count` offsets from Bpe::long_cuts[first] (longer words).
struct Entry {
  uint64_t hash = kEmpty;
  uint32_t key_offset = 0, key_size = 0;
  uint64_t mask = 0;
  uint32_t first = 0, count = 0;
};

uint64_t hash_bytes(const char *data, size_t size) {
  uint64_t h = 0x243F6A8885A308D3ull ^ size;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, data + i, 8);
    h = (h ^ chunk) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 31;
  }
  if (i < size) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, data + i, size - i);
    h = (h ^ chunk) * 0xC4CEB9FE1A85EC53ull;
  }
  h = mix(h);
  return h == kEmpty ? 0 : h;
}

struct Bpe {
  PairTable pairs;
  std::vector<int32_t> merged;  // rank -> id of the merged symbol
  std::unordered_map<uint32_t, int32_t> char_id, final_id;  // code point -> id of "c" and of "c</w>"
  int32_t end_of_word_id;
  int version;  // 1: v0.1, "</w>" a symbol of its own; 2: v0.2, attached to the last character
  // Word -> cut points, open addressing over `entries` (load <= 1/2); the keys live in `arena`.
  std::vector<Entry> entries = std::vector<Entry>(1 << 16);
  size_t used = 0;
  std::string arena;
  std::vector<uint32_t> long_cuts;

  const Entry *find(const char *word, size_t size, uint64_t h) const {
    const size_t mask = entries.size() - 1;
    for (size_t slot = h & mask;; slot = (slot + 1) & mask) {
      const Entry &entry = entries[slot];
      if (entry.hash == kEmpty) return nullptr;
      if (entry.hash == h && entry.key_size == size && std::memcmp(arena.data() + entry.key_offset, word, size) == 0)
        return &entry;
    }
  }

  void insert(const Entry &entry) {
    if ((used + 1) * 2 > entries.size()) {
      std::vector<Entry> old(entries.size() * 2);
      old.swap(entries);
      used = 0;
      for (const Entry &e : old)
        if (e.hash != kEmpty) insert(e);
    }
    const size_t mask = entries.size() - 1;
    size_t slot = entry.hash & mask;
    while (entries[slot].hash != kEmpty) slot = (slot + 1) & mask;
    entries[slot] = entry;
    ++used;
  }
};

constexpr int32_t kNoSymbol = -1;  // a character no merge knows: never part of a pair
constexpr int64_t kNotHandled = -1, kInvalidUtf8 = -2;

// Next code point of UTF-8 at s[*i] (advancing *i), or -1 when the bytes are not valid UTF-8 (as Python decodes it:
// no overlongs, no surrogates, at most U+10FFFF).
int32_t next_code_point(const unsigned char *s, size_t n, size_t *i) {
  const unsigned char c = s[*i];
  int extra;
  uint32_t cp;
  if (c < 0x80) { *i += 1; return c; }
  if (c >= 0xC2 && c <= 0xDF) { extra = 1; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { extra = 2; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { extra = 3; cp = c & 0x07; }
  else return -1;
  if (*i + extra >= n) return -1;
  for (int k = 1; k <= extra; ++k) {
    const unsigned char d = s[*i + k];
    if ((d & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
    return -1;
  *i += extra + 1;
  return static_cast<int32_t>(cp);
}

bool breaks_lines(int32_t cp) {  // characters that end a line for str.splitlines, besides "\n"; and NUL
  return cp == 0 || cp == 0x0D || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E || cp == 0x85 ||
         cp == 0x2028 || cp == 0x2029;
}

int32_t lookup(const std::unordered_map<uint32_t, int32_t> &table, int32_t cp) {
  auto found = table.find(static_cast<uint32_t>(cp));
  return found == table.end() ? kNoSymbol : found->second;
}

// Encodes a new word into the cache; kNotHandled / kInvalidUtf8 when it cannot (then nothing is cached).
int64_t learn(Bpe &bpe, std::string_view word, uint64_t h, const Entry **out) {
  if (word.find("</w>") != std::string_view::npos) return kNotHandled;  // rare; the Python path is exact for it
  std::vector<int32_t> symbols;
  std::vector<uint32_t> widths;  // bytes of each symbol in the word ("</w>" takes none)
  const auto *bytes = reinterpret_cast<const unsigned char *>(word.data());
  size_t i = 0;
  int32_t last_cp = 0;
  while (i < word.size()) {
    const size_t start = i;
    const int32_t cp = next_code_point(bytes, word.size(), &i);
    if (cp < 0) return kInvalidUtf8;
    widths.push_back(static_cast<uint32_t>(i - start));
    if (breaks_lines(cp)) return kNotHandled;
    symbols.push_back(lookup(bpe.char_id, cp));
    last_cp = cp;
  }
  if (bpe.version == 2) {
    symbols.back() = lookup(bpe.final_id, last_cp);
  } else {
    symbols.push_back(bpe.end_of_word_id);
    widths.push_back(0);
  }
  // subword_nmt.apply_bpe.encode: merge every occurrence of the lowest-ranked pair, left to right, until none is
  // left. ranks[k] is the rank of (symbols[k], symbols[k + 1]); after a merge only the neighbours' ranks change.
  std::vector<int32_t> ranks(symbols.size(), INT32_MAX);
  for (size_t k = 0; k + 1 < symbols.size(); ++k) ranks[k] = bpe.pairs.rank(symbols[k], symbols[k + 1]);
  while (symbols.size() > 1) {
    int32_t best = INT32_MAX;
    for (size_t k = 0; k + 1 < symbols.size(); ++k) best = ranks[k] < best ? ranks[k] : best;
    if (best == INT32_MAX) break;
    size_t write = 0;
    for (size_t k = 0; k < symbols.size(); ++k, ++write) {
      if (k + 1 < symbols.size() && ranks[k] == best) {
        symbols[write] = bpe.merged[best];
        widths[write] = widths[k] + widths[k + 1];
        ranks[write] = -1;  // recomputed below
        ++k;
      } else {
        symbols[write] = symbols[k];
        widths[write] = widths[k];
        ranks[write] = ranks[k];
      }
    }
    symbols.resize(write);
    widths.resize(write);
    ranks.resize(write);
    for (size_t k = 0; k < write; ++k) {
      if (ranks[k] != -1) continue;
      ranks[k] = k + 1 < write ? bpe.pairs.rank(symbols[k], symbols[k + 1]) : INT32_MAX;
      if (k > 0) ranks[k - 1] = bpe.pairs.rank(symbols[k - 1], symbols[k]);
    }
  }
  // A final bare "</w>" (v0.1) is dropped; every other symbol is a piece of the word, in order.
  if (bpe.version == 1 && symbols.size() > 1 && symbols.back() == bpe.end_of_word_id) symbols.pop_back();
  Entry entry;
  entry.hash = h;
  entry.key_offset = static_cast<uint32_t>(bpe.arena.size());
  entry.key_size = static_cast<uint32_t>(word.size());
  entry.first = static_cast<uint32_t>(bpe.long_cuts.size());
  uint32_t offset = 0;
  for (size_t k = 0; k + 1 < symbols.size(); ++k) {
    offset += widths[k];
    if (word.size() <= 64) {
      entry.mask |= 1ull << offset;  // offset < 64: the last piece is not empty
    } else {
      bpe.long_cuts.push_back(offset);
      ++entry.count;
    }
  }
  if (bpe.arena.size() + word.size() >= (1ull << 32)) return kNotHandled;
  bpe.arena.append(word);
  bpe.insert(entry);
  *out = bpe.find(word.data(), word.size(), h);
  return 0;
}

}  // namespace

extern "C" {

// left/right/merged: per rank, the symbol ids of the merge (ids > 0); chars/char_ids and
// finals/final_ids: code points with a symbol "c" / "c</w>".
void *bpe_create(const int32_t *left, const int32_t *right, const int32_t *merged, int64_t merges,
                 const int32_t *chars, const int32_t *char_ids,
                 int64_t char_count, const int32_t *finals, const int32_t *final_ids, int64_t final_count,
                 int32_t end_of_word_id, int32_t version) {
  auto *bpe = new Bpe();
  bpe->pairs.build(left, right, merges);
  bpe->merged.assign(merged, merged + merges);
  for (int64_t k = 0; k < char_count; ++k) bpe->char_id[static_cast<uint32_t>(chars[k])] = char_ids[k];
  for (int64_t k = 0; k < final_count; ++k) bpe->final_id[static_cast<uint32_t>(finals[k])] = final_ids[k];
  bpe->end_of_word_id = end_of_word_id;
  bpe->version = version;
  return bpe;
}

void bpe_free(void *handle) { delete static_cast<Bpe *>(handle); }

// Encodes `data` (whole lines without the last "\n") into `out` (capacity: size * (1 + insert_size)); returns the
// bytes written, kNotHandled (an empty word that is not an empty line, a line end other than "\n", a word holding
// "</w>") or kInvalidUtf8. Words seen before are not checked again: they passed when they were new.
int64_t bpe_apply_plain(void *handle, const char *data, int64_t size, const char *insert, int64_t insert_size,
                        char *out) {
  Bpe &bpe = *static_cast<Bpe *>(handle);
  char *write = out;
  int64_t begin = 0;
  while (begin <= size) {
    int64_t end = begin;
    while (end < size && data[end] != ' ' && data[end] != '\n') ++end;
    const std::string_view word(data + begin, static_cast<size_t>(end - begin));
    if (word.empty()) {
      const bool line_start = begin == 0 || data[begin - 1] == '\n';
      const bool line_end = end == size || data[end] == '\n';
      if (!line_start || !line_end) return kNotHandled;
    } else {
      const uint64_t h = hash_bytes(word.data(), word.size());
      const Entry *entry = bpe.find(word.data(), word.size(), h);
      if (entry == nullptr) {
        const int64_t status = learn(bpe, word, h, &entry);
        if (status != 0) return status;
      }
      size_t done = 0;
      auto cut_at = [&](size_t cut) {
        std::memcpy(write, word.data() + done, cut - done);
        write += cut - done;
        std::memcpy(write, insert, static_cast<size_t>(insert_size));
        write += insert_size;
        done = cut;
      };
      if (word.size() <= 64) {
        for (uint64_t mask = entry->mask; mask; mask &= mask - 1) cut_at(static_cast<size_t>(__builtin_ctzll(mask)));
      } else {
        for (uint32_t k = 0; k < entry->count; ++k) cut_at(bpe.long_cuts[entry->first + k]);
      }
      std::memcpy(write, word.data() + done, word.size() - done);
      write += word.size() - done;
    }
    if (end < size) *write++ = data[end];
    begin = end + 1;
  }
  return write - out;
}

}  // extern "C"
