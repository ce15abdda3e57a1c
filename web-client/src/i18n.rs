//! The client's words: Chinese first, English with `lang=en`.

/// Interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文 (the default).
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The language for a `lang=` URL parameter (Chinese unless it asks for English).
    pub fn from_param(param: Option<&str>) -> Lang {
        match param.map(str::to_ascii_lowercase).as_deref() {
            Some("en") | Some("en-us") | Some("en-gb") => Lang::En,
            _ => Lang::Zh,
        }
    }

    /// The HTML `lang` attribute.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// All fixed texts in this language.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// Every fixed text the client shows.
pub struct Text {
    pub checking: &'static str,
    pub hello: &'static str,
    pub join: &'static str,
    pub joining: &'static str,
    pub connecting: &'static str,
    pub waiting_teacher: &'static str,
    pub microphone: &'static str,
    pub camera: &'static str,
    pub leave: &'static str,
    pub left: &'static str,
    pub rejoin: &'static str,
    pub me: &'static str,
    pub teacher: &'static str,
    pub assistant: &'static str,
    pub enable_sound: &'static str,
    pub raise_hand: &'static str,
    pub lower_hand: &'static str,
    pub hands_title: &'static str,
    pub lower_their_hand: &'static str,
    pub chat_title: &'static str,
    pub chat_placeholder: &'static str,
    pub chat_send: &'static str,
    pub chat_off: &'static str,
    pub chat_turn_off: &'static str,
    pub chat_turn_on: &'static str,
    pub chat_too_fast: &'static str,
    pub missing_token: &'static str,
    pub token_expired: &'static str,
    pub invalid_token: &'static str,
    pub lesson_full: &'static str,
    pub camera_refused: &'static str,
    pub connection_lost: &'static str,
    pub server_shutdown: &'static str,
    pub replaced: &'static str,
    pub publish_not_allowed: &'static str,
    pub unsupported: &'static str,
    pub generic_error: &'static str,
    pub stage_invited: &'static str,
    pub stage_invited_school: &'static str,
    pub stage_accept: &'static str,
    pub stage_decline: &'static str,
    pub on_stage_now: &'static str,
    pub off_stage_now: &'static str,
    pub stage_declined: &'static str,
    pub invite_on_stage: &'static str,
    pub take_off_stage: &'static str,
    pub leave_stage: &'static str,
    pub stage_full: &'static str,
    pub muted_by_teacher: &'static str,
    pub unmuted_by_teacher: &'static str,
    pub lesson_now_locked: &'static str,
    pub lesson_now_unlocked: &'static str,
    pub lesson_locked: &'static str,
    pub removed: &'static str,
    pub lesson_ended: &'static str,
    pub announcement: &'static str,
    pub roster_title: &'static str,
    pub mute: &'static str,
    pub unmute: &'static str,
    pub remove: &'static str,
    pub lock: &'static str,
    pub unlock: &'static str,
    pub end_lesson: &'static str,
    pub confirm_end: &'static str,
    pub confirm_remove: &'static str,
}

static ZH: Text = Text {
    checking: "正在检查上课链接…",
    hello: "你好，",
    join: "进入课堂",
    joining: "正在进入课堂…",
    connecting: "正在连接音视频…",
    waiting_teacher: "等待老师开始上课…",
    microphone: "麦克风",
    camera: "摄像头",
    leave: "离开课堂",
    left: "你已离开课堂。",
    rejoin: "重新进入课堂",
    me: "我",
    teacher: "老师",
    assistant: "助教",
    enable_sound: "点这里开启声音",
    raise_hand: "举手",
    lower_hand: "放下手",
    hands_title: "举手的学员",
    lower_their_hand: "放下",
    chat_title: "聊天",
    chat_placeholder: "在这里输入文字",
    chat_send: "发送",
    chat_off: "老师已关闭聊天。",
    chat_turn_off: "关闭聊天",
    chat_turn_on: "开启聊天",
    chat_too_fast: "发得太快了，请稍等一下再发。",
    missing_token: "这个上课链接不完整。请向学校重新索取链接。",
    token_expired: "这个上课链接已过期。请向学校索取新的链接。",
    invalid_token: "这个上课链接无效。请向学校索取新的链接。",
    lesson_full: "课堂人数已满，暂时无法进入。请稍后再试，或联系老师。",
    camera_refused: "无法使用摄像头或麦克风。请在浏览器中允许使用后刷新页面。你仍然可以观看课堂。",
    connection_lost: "网络连接已断开。请检查网络后重新进入。",
    server_shutdown: "服务器正在维护，课堂暂时中断。请稍后重新进入。",
    replaced: "你已在另一个窗口或设备上进入了这个课堂。",
    publish_not_allowed: "在这个课堂中只有老师开启摄像头和麦克风，你可以观看和收听。",
    unsupported: "此浏览器无法进行视频课堂。请使用最新版的 Chrome、Edge、Firefox 或 Safari。",
    generic_error: "出现了问题：",
    stage_invited: "邀请你上台发言。",
    stage_invited_school: "学校邀请你上台发言。",
    stage_accept: "上台",
    stage_decline: "暂不",
    on_stage_now: "你已上台，大家可以看到和听到你。",
    off_stage_now: "你已下台。",
    stage_declined: " 暂不上台。",
    invite_on_stage: "邀请上台",
    take_off_stage: "请下台",
    leave_stage: "下台",
    stage_full: "台上人数已满。",
    muted_by_teacher: "老师已将你静音。",
    unmuted_by_teacher: "老师已允许你发言，可以打开麦克风了。",
    lesson_now_locked: "课堂已锁定：新学员暂时无法进入。",
    lesson_now_unlocked: "课堂已解除锁定。",
    lesson_locked: "课堂已锁定，暂时无法进入。请联系老师。",
    removed: "你已被移出本节课。",
    lesson_ended: "本节课已结束，谢谢参加！",
    announcement: "学校通知",
    roster_title: "课堂成员",
    mute: "静音",
    unmute: "取消静音",
    remove: "移出",
    lock: "锁定课堂",
    unlock: "解除锁定",
    end_lesson: "结束课程",
    confirm_end: "确定要为所有人结束本节课吗？",
    confirm_remove: "确定要把这位学员移出本节课吗？移出后不能再进入。",
};

static EN: Text = Text {
    checking: "Checking your lesson link…",
    hello: "Hello, ",
    join: "Join the lesson",
    joining: "Joining the lesson…",
    connecting: "Connecting audio and video…",
    waiting_teacher: "Waiting for the teacher…",
    microphone: "Microphone",
    camera: "Camera",
    leave: "Leave",
    left: "You have left the lesson.",
    rejoin: "Join again",
    me: "Me",
    teacher: "Teacher",
    assistant: "Assistant",
    enable_sound: "Tap here to turn on sound",
    raise_hand: "Raise hand",
    lower_hand: "Lower hand",
    hands_title: "Raised hands",
    lower_their_hand: "Lower",
    chat_title: "Chat",
    chat_placeholder: "Type here",
    chat_send: "Send",
    chat_off: "The teacher has turned the chat off.",
    chat_turn_off: "Turn chat off",
    chat_turn_on: "Turn chat on",
    chat_too_fast: "Too fast; please wait a moment before sending again.",
    missing_token: "This lesson link is incomplete. Please ask your school for a new link.",
    token_expired: "This lesson link has expired. Please ask your school for a new one.",
    invalid_token: "This lesson link is not valid. Please ask your school for a new one.",
    lesson_full: "The lesson is full. Please try again later or contact the teacher.",
    camera_refused: "The camera or microphone cannot be used. Allow them in the browser and reload. You can still watch the lesson.",
    connection_lost: "The connection was lost. Check the network and join again.",
    server_shutdown: "The server is under maintenance; the lesson is interrupted. Please join again later.",
    replaced: "You joined this lesson from another window or device.",
    publish_not_allowed: "In this lesson only the teacher uses camera and microphone; you can watch and listen.",
    unsupported: "This browser cannot take part in video lessons. Please use a current Chrome, Edge, Firefox or Safari.",
    generic_error: "Something went wrong: ",
    stage_invited: "invites you on stage to speak.",
    stage_invited_school: "The school invites you on stage to speak.",
    stage_accept: "Go on stage",
    stage_decline: "Not now",
    on_stage_now: "You are on stage: everyone can see and hear you.",
    off_stage_now: "You left the stage.",
    stage_declined: " declined to come on stage.",
    invite_on_stage: "Invite on stage",
    take_off_stage: "Take off stage",
    leave_stage: "Leave the stage",
    stage_full: "The stage is full.",
    muted_by_teacher: "The teacher muted you.",
    unmuted_by_teacher: "The teacher lets you speak again: you can turn your microphone on.",
    lesson_now_locked: "The lesson is locked: nobody new can join.",
    lesson_now_unlocked: "The lesson is unlocked.",
    lesson_locked: "The lesson is locked. Please contact the teacher.",
    removed: "You were removed from this lesson.",
    lesson_ended: "This lesson has ended. Thank you for joining!",
    announcement: "School notice",
    roster_title: "Participants",
    mute: "Mute",
    unmute: "Unmute",
    remove: "Remove",
    lock: "Lock lesson",
    unlock: "Unlock lesson",
    end_lesson: "End lesson",
    confirm_end: "End the lesson for everyone?",
    confirm_remove: "Remove this participant? They cannot join again.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_unless_english_is_asked_for() {
        assert_eq!(Lang::from_param(None), Lang::Zh);
        assert_eq!(Lang::from_param(Some("fr")), Lang::Zh);
        assert_eq!(Lang::from_param(Some("EN")), Lang::En);
        assert_eq!(Lang::En.text().join, "Join the lesson");
        assert_eq!(Lang::Zh.text().join, "进入课堂");
    }
}
