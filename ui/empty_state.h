// What a first run shows in place of the chat: how to open a model, attach a document and ask,
// with buttons for each step; and the banner that carries errors and notices in the window.
#pragma once

#include <QFrame>
#include <QWidget>

class QLabel;
class QPushButton;

namespace resa::ui {

class EmptyState : public QWidget {
  Q_OBJECT
 public:
  explicit EmptyState(QWidget* parent = nullptr);
  void setModelState(bool loaded, const QString& description);
  // The steps as plain text (tests, accessibility).
  QString text() const;

 signals:
  void openModelRequested();
  void demoModelRequested();
  void attachRequested();

 private:
  QLabel* modelStep_;
  QLabel* attachStep_;
  QLabel* askStep_;
  QPushButton* openModel_;
  QPushButton* demo_;
};

// An inline message at the top of the chat (KMessageWidget-like): error or information, with an
// optional action button and a close button.
class Banner : public QFrame {
  Q_OBJECT
 public:
  explicit Banner(QWidget* parent = nullptr);
  void showMessage(const QString& text, bool error, const QString& action = {});
  QString text() const;
  bool isError() const { return error_; }

 signals:
  void actionTriggered();

 private:
  QLabel* icon_;
  QLabel* text_;
  QPushButton* action_;
  bool error_ = false;
};

}  // namespace resa::ui
