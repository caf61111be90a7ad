// Asked before a turn would overflow the context (issue 3 item 6): says how many tokens the
// document, the earlier turns, the new message and the answer need against the limit, and offers
// to drop the oldest turns (optionally keeping the document pinned) instead of truncating
// silently.
#pragma once

#include <QDialog>
#include <optional>

#include "app/lib/app_types.h"

class QRadioButton;

namespace resa::ui {

class OverflowDialog : public QDialog {
  Q_OBJECT
 public:
  explicit OverflowDialog(const app::ContextOverflow& o, QWidget* parent = nullptr);
  // The choice, or nullopt for Cancel.
  std::optional<app::OverflowPolicy> policy() const;
  // The choices: drop the oldest turns keeping the documents, or dropping them too if needed.
  QRadioButton* keepDocumentButton() const { return pinned_; }
  QRadioButton* dropDocumentButton() const { return dropAll_; }

 private:
  QRadioButton* pinned_;
  QRadioButton* dropAll_;
};

}  // namespace resa::ui
