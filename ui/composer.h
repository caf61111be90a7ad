// The message composer: a multi-line field (Enter sends, Shift+Enter starts a new line) that grows
// with its text, Attach, and one button that is Send while idle and Stop while generating.
// Attached documents show as chips with their token counts above it.
#pragma once

#include <QFrame>
#include <QPlainTextEdit>

class QHBoxLayout;
class QLabel;
class QPushButton;
class QToolButton;

namespace resa::ui {

class ComposerEdit : public QPlainTextEdit {
  Q_OBJECT
 public:
  explicit ComposerEdit(QWidget* parent = nullptr);
  QSize sizeHint() const override;

 signals:
  void submit();

 protected:
  void keyPressEvent(QKeyEvent* e) override;

 private:
  void fitHeight();
};

class Composer : public QFrame {
  Q_OBJECT
 public:
  explicit Composer(QWidget* parent = nullptr);

  QString text() const;
  void setText(const QString& text);
  void clear();
  void setBusy(bool busy);  // Send <-> Stop
  bool isBusy() const { return busy_; }
  void setReady(bool ready, const QString& why = {});  // a model is loaded
  void setEditing(bool editing);                       // Edit-and-resend of the last user message
  bool isEditing() const { return editing_; }
  void setAttachments(const QList<QPair<QString, int>>& nameAndTokens, bool estimated);
  ComposerEdit* edit() const { return edit_; }
  QPushButton* sendButton() const { return send_; }

 signals:
  void sendRequested(const QString& text);
  void stopRequested();
  void attachRequested();
  void removeAttachmentRequested(int index);
  void editCancelled();

 private:
  void trySend();
  void updateButtons();

  ComposerEdit* edit_;
  QPushButton* send_;
  QToolButton* attach_;
  QWidget* chips_;
  QHBoxLayout* chipLayout_;
  QLabel* editBanner_;
  QToolButton* cancelEdit_;
  bool busy_ = false;
  bool ready_ = false;
  bool editing_ = false;
};

}  // namespace resa::ui
