// Chat formats of the common model families, chosen from tokenizer_config.json's chat_template
// (or by name), rendered turn by turn so that a conversation's KV cache can be extended.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace resa {

// kQwen25 is ChatML with Qwen2.5's default system prompt (kQwenDefaultSystem) when the user
// gives none; kDeepSeekR1 is DeepSeek-R1 and its Distill models (<｜User｜>, <｜Assistant｜>,
// answers opened with "<think>\n").
enum class ChatFormat { kRaw, kLlama2, kMistral, kChatML, kLlama3, kZephyr, kQwen25, kDeepSeekR1 };

// What Qwen2.5's template writes as the system prompt when the conversation has none.
inline constexpr std::string_view kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

std::string_view chat_format_name(ChatFormat f);  // "raw", "llama2", ..., "qwen2.5", "deepseek-r1"
std::optional<ChatFormat> parse_chat_format(std::string_view name);
// Recognises a Jinja chat_template by its markers (<｜User｜>, [INST] with/without <<SYS>>,
// <|im_start|> with or without Qwen's default system prompt, <|start_header_id|>, <|user|>).
// Returns kRaw when nothing matches.
ChatFormat detect_chat_format(std::string_view chat_template);

struct ChatTokens {
  std::string bos = "<s>";
  std::string eos = "</s>";
};

// Text (with special-token strings, for Tokenizer::encode_with_specials) of one user turn and
// the assistant prefix that follows it. `first` is true for the conversation's first turn (it
// carries BOS and the system prompt where the format has one). Rendered turns concatenate to
// what the family's chat_template renders for the whole conversation.
std::string render_user_turn(ChatFormat f, const ChatTokens& t, std::string_view system,
                             std::string_view user, bool first);
// Text appended after a generated answer when it ended by a stop token that the model emitted
// itself (e.g. "\n" after ChatML's <|im_end|>), so the next turn starts where the template
// expects. Empty for most formats.
std::string render_after_answer(ChatFormat f, const ChatTokens& t);
// Text that closes an answer the model did not close itself (cut by the length limit,
// cancelled, or re-rendered from a stored conversation): the stop token and what follows it,
// e.g. "<|im_end|>\n" for ChatML, eos for DeepSeek-R1. Followed by the next render_user_turn.
std::string render_answer_end(ChatFormat f, const ChatTokens& t);
// Stop strings of the format ("<|im_end|>", "<|eot_id|>", "</s>"), to add to the stop ids.
std::vector<std::string> chat_stop_strings(ChatFormat f, const ChatTokens& t);

// Reasoning models write their thinking before the answer, between <think> and </think>. In
// DeepSeek-R1's format the assistant prefix already holds "<think>\n", so the generated text
// starts inside the thinking.
bool answer_starts_in_thinking(ChatFormat f);
struct ThinkingSplit {
  std::string thinking;        // without the tags and the newlines around them
  std::string answer;          // what follows </think>, leading newlines removed
  bool thinking_done = false;  // </think> was seen (false: everything so far is thinking)
};
// Splits generated text (possibly partial, while streaming) into thinking and answer. Text that
// neither starts in thinking nor opens with "<think>" is all answer.
ThinkingSplit split_thinking(std::string_view generated, bool starts_in_thinking);

}  // namespace resa
