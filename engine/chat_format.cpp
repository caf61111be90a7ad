// Chat formats: each render_* reproduces what the family's Jinja chat_template in
// tokenizer_config.json renders, split at turn boundaries so the KV cache can be extended.
#include "engine/chat_format.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace resa {

namespace {

constexpr std::pair<ChatFormat, std::string_view> kNames[] = {
    {ChatFormat::kRaw, "raw"},         {ChatFormat::kLlama2, "llama2"},
    {ChatFormat::kMistral, "mistral"}, {ChatFormat::kChatML, "chatml"},
    {ChatFormat::kLlama3, "llama3"},   {ChatFormat::kZephyr, "zephyr"},
    {ChatFormat::kQwen25, "qwen2.5"},  {ChatFormat::kDeepSeekR1, "deepseek-r1"}};

// DeepSeek's markers: fullwidth vertical bars (U+FF5C) and U+2581 in place of spaces.
constexpr std::string_view kR1User = "<｜User｜>";
constexpr std::string_view kR1Assistant = "<｜Assistant｜>";

bool contains(std::string_view s, std::string_view what) {
  return s.find(what) != std::string_view::npos;
}

// Jinja's trim / Python's strip(), which the Llama 2 and Llama 3 templates apply to contents.
std::string_view trim(std::string_view s) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out.append(p);
  return out;
}

}  // namespace

std::string_view chat_format_name(ChatFormat f) {
  for (const auto& [format, name] : kNames) {
    if (format == f) return name;
  }
  return "raw";
}

std::optional<ChatFormat> parse_chat_format(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  for (const auto& [format, n] : kNames) {
    if (n == lower) return format;
  }
  return std::nullopt;
}

ChatFormat detect_chat_format(std::string_view chat_template) {
  // Most specific marker first: Llama 3 and ChatML templates may mention [INST] in comments
  // or tool sections, never the other way round.
  if (contains(chat_template, kR1User) && contains(chat_template, kR1Assistant)) {
    return ChatFormat::kDeepSeekR1;
  }
  if (contains(chat_template, "<|start_header_id|>")) return ChatFormat::kLlama3;
  if (contains(chat_template, "<|im_start|>")) {
    // Qwen2.5's template writes its default system prompt when the conversation has none.
    return contains(chat_template, kQwenDefaultSystem) ? ChatFormat::kQwen25 : ChatFormat::kChatML;
  }
  if (contains(chat_template, "<|user|>")) return ChatFormat::kZephyr;
  if (contains(chat_template, "[INST]")) {
    return contains(chat_template, "<<SYS>>") ? ChatFormat::kLlama2 : ChatFormat::kMistral;
  }
  return ChatFormat::kRaw;
}

std::string render_user_turn(ChatFormat f, const ChatTokens& t, std::string_view system,
                             std::string_view user, bool first) {
  // The templates write bos_token as text; our encode never adds BOS, so first turns carry it.
  const std::string_view bos = first ? std::string_view(t.bos) : std::string_view();
  const bool sys = first && !system.empty();
  switch (f) {
    case ChatFormat::kLlama2:
      // Meta's template: bos + "[INST] " + strip("<<SYS>>\n" + system + "\n<</SYS>>\n\n" +
      // user) + " [/INST]"; the answer follows as " {answer} </s>", emitted by the model.
      // Unlike the other families it repeats bos on every user turn.
      if (sys) {
        const std::string content = cat({"<<SYS>>\n", system, "\n<</SYS>>\n\n", user});
        return cat({t.bos, "[INST] ", trim(content), " [/INST]"});
      }
      return cat({t.bos, "[INST] ", trim(user), " [/INST]"});
    case ChatFormat::kMistral:
      // One bos for the whole conversation; the system prompt joins the first user message.
      if (sys) return cat({bos, "[INST] ", system, "\n\n", user, " [/INST]"});
      return cat({bos, "[INST] ", user, " [/INST]"});
    case ChatFormat::kChatML:
    case ChatFormat::kQwen25: {
      std::string out;
      if (sys) {
        out = cat({"<|im_start|>system\n", system, "<|im_end|>\n"});
      } else if (first && f == ChatFormat::kQwen25) {
        out = cat({"<|im_start|>system\n", kQwenDefaultSystem, "<|im_end|>\n"});
      }
      out += cat({"<|im_start|>user\n", user, "<|im_end|>\n<|im_start|>assistant\n"});
      return out;
    }
    case ChatFormat::kDeepSeekR1:
      // The template writes bos, then the system prompt with no marker, then the turns; its
      // generation prompt opens the thinking. (Re-rendering a whole conversation, it drops the
      // earlier answers' thinking; extending the KV cache turn by turn keeps it.)
      return cat(
          {bos, sys ? system : std::string_view(), kR1User, user, kR1Assistant, "<think>\n"});
    case ChatFormat::kLlama3: {
      // Meta's template trims every content.
      std::string out = first ? "<|begin_of_text|>" : "";
      if (sys) {
        out += cat({"<|start_header_id|>system<|end_header_id|>\n\n", trim(system), "<|eot_id|>"});
      }
      out += cat({"<|start_header_id|>user<|end_header_id|>\n\n", trim(user),
                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"});
      return out;
    }
    case ChatFormat::kZephyr: {
      std::string out(bos);
      if (sys) out += cat({"<|system|>\n", system, t.eos, "\n"});
      out += cat({"<|user|>\n", user, t.eos, "\n<|assistant|>\n"});
      return out;
    }
    case ChatFormat::kRaw:
      break;
  }
  return cat({bos, user});
}

std::string render_after_answer(ChatFormat f, const ChatTokens&) {
  // ChatML writes "<|im_end|>\n" and Zephyr "</s>\n" after every message; the model emits only
  // the stop token, so the newline is ours. The others end a message with the token itself.
  switch (f) {
    case ChatFormat::kChatML:
    case ChatFormat::kQwen25:
    case ChatFormat::kZephyr:
      return "\n";
    default:
      return "";
  }
}

std::string render_answer_end(ChatFormat f, const ChatTokens& t) {
  switch (f) {
    case ChatFormat::kChatML:
    case ChatFormat::kQwen25:
      return "<|im_end|>\n";
    case ChatFormat::kLlama3:
      return "<|eot_id|>";
    case ChatFormat::kZephyr:
      return t.eos + "\n";
    case ChatFormat::kLlama2:
    case ChatFormat::kMistral:
    case ChatFormat::kDeepSeekR1:
      return t.eos;
    case ChatFormat::kRaw:
      return "\n\n";
  }
  return "";
}

std::vector<std::string> chat_stop_strings(ChatFormat f, const ChatTokens& t) {
  std::vector<std::string> stops;
  switch (f) {
    case ChatFormat::kChatML:
    case ChatFormat::kQwen25:
      stops.push_back("<|im_end|>");
      break;
    case ChatFormat::kLlama3:
      stops.push_back("<|eot_id|>");
      break;
    default:
      break;
  }
  // The tokenizer's eos ends an answer in every family (Qwen's <|endoftext|>, Llama 3's
  // <|end_of_text|> after a base-model style continuation).
  if (!t.eos.empty() && std::find(stops.begin(), stops.end(), t.eos) == stops.end()) {
    stops.push_back(t.eos);
  }
  return stops;
}

bool answer_starts_in_thinking(ChatFormat f) { return f == ChatFormat::kDeepSeekR1; }

ThinkingSplit split_thinking(std::string_view generated, bool starts_in_thinking) {
  constexpr std::string_view kOpen = "<think>", kClose = "</think>";
  ThinkingSplit out;
  std::string_view text = generated;
  if (!starts_in_thinking) {
    const size_t lead = text.find_first_not_of(" \n");
    if (lead == std::string_view::npos || text.substr(lead, kOpen.size()) != kOpen) {
      out.answer = std::string(generated);
      out.thinking_done = true;
      return out;
    }
    text.remove_prefix(lead + kOpen.size());
  }
  const size_t close = text.find(kClose);
  std::string_view thinking = close == std::string_view::npos ? text : text.substr(0, close);
  while (!thinking.empty() && thinking.front() == '\n') thinking.remove_prefix(1);
  if (close != std::string_view::npos) {
    while (!thinking.empty() && thinking.back() == '\n') thinking.remove_suffix(1);
    std::string_view answer = text.substr(close + kClose.size());
    while (!answer.empty() && answer.front() == '\n') answer.remove_prefix(1);
    out.answer = std::string(answer);
    out.thinking_done = true;
  }
  out.thinking = std::string(thinking);
  return out;
}

}  // namespace resa
